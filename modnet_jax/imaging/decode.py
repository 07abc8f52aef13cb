"""Reading images, mattes and video frames with OpenCV, and cheap header checks.

Policies decided here (documented once, relied on by every source):

* Colour images are decoded to 8-bit RGB, upright: a JPEG's EXIF orientation tag is applied
  (as photo viewers do). A matte is taken to be in its photo's stored pixel order, so the
  photo's orientation is applied to the matte too (the matte file's own tag is not used):
  the pair always lines up, whatever the formats. `exif_orientation` reads the tag, `orient`
  applies it; OpenCV's own rotation is always turned off (it would rotate a JPEG photo but
  not its PNG matte).
* Headers (size, channels, depth) come from the `imagesize` library; our own marker walker
  was ~2x faster per file (81 vs 163 us median on 800 cached files, loaded machine;
  benchmarks/RESULTS.md) but that is ~1 s per 20,000 files once per run, not worth the code.
* Files are decoded by what their content is, the extension being only a hint, and refused
  when incomplete, claiming a decompression bomb or holding NaN/infinity: `checks` decides,
  both at start-up (`probe_header`) and when decoded.
* Mattes (alpha files) are converted to 8-bit single channel:
  - 16-bit: scaled, round(a * 255 / 65535); float files are taken as [0, 1].
  - RGBA: the alpha channel is used when it carries information (is not all opaque); a
    fully opaque RGBA file whose colour channels agree is read as a grey matte; otherwise
    the file is unusable (a coloured picture with no matte in it).
  - 3-channel: accepted when the channels agree to within `CHANNEL_TOLERANCE` levels (JPEG
    chroma noise on a grey image saved as colour), converted to grey; otherwise unusable.
  Each kind of conversion is reported once per process.
* Reduced-size decoding (`reduce` = 2, 4 or 8): a JPEG is decoded by libjpeg at 1/reduce
  scale, which skips part of the inverse DCT and colour conversion. The result is
  ceil(H / reduce) x ceil(W / reduce) (`reduced_shape`) for every format: files that cannot
  be decoded that way are decoded in full and shrunk to that size with area averaging, so a
  JPEG photo and its PNG matte come out the same size. `reduction_for` picks the factor that
  keeps the short side at or above a required length, so no detail the sample needs is lost.
* Raw files (`.npy` content, written by `prepare --format raw`): memory-mapped read-only
  instead of decoded (`raw`); the returned arrays are read-only views of the file.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass

import cv2
import imagesize
import numpy as np

from modnet_jax.imaging import raw
from modnet_jax.imaging.checks import check_claimed_size, check_complete, check_finite
from modnet_jax.imaging.checks import check_pixels, content_kind
from modnet_jax.imaging.files import UnusableFile, note_once
from modnet_jax.imaging.signatures import HEAD_BYTES, kind_from_head

# Largest per-pixel channel disagreement still read as a grey matte (JPEG chroma noise).
CHANNEL_TOLERANCE = 8

_JPEG_START = b"\xff\xd8"
_COLOUR_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_REDUCED_FLAGS = {
    1: _COLOUR_FLAGS,
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}
_REDUCED_GREY_FLAGS = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}
@dataclass(frozen=True)
class HeaderInfo:
    """What a PNG/JPEG header says, read without decoding the pixels."""

    width: int
    height: int
    channels: int
    bit_depth: int


def _header_info(path: str, source, kind: str | None = None) -> HeaderInfo:
    """Size, channels and bit depth from the `imagesize` library (path or binary stream).

    imagesize reports `colors` = 2 ** (bits per sample x colour channels) for PNG and -1 for
    JPEG (taken as 8-bit: the precision OpenCV's libjpeg decodes).
    """
    try:
        info = imagesize.get_info(source, dpi=False, exif_rotation=False)
    except (ValueError, struct.error, IndexError) as err:
        what = "not a PNG file" if kind == "png" else "corrupt JPEG header"
        raise UnusableFile(path, f"{what} (unreadable header: {err})") from err
    if info.width <= 0 or info.height <= 0:
        raise UnusableFile(path, "corrupt image header (no size found)")
    channels = max(1, int(info.channels))
    colour_channels = channels - 1 if channels in (2, 4) else channels
    depth = 8
    if info.colors > 0:
        depth = max(1, round(math.log2(info.colors) / colour_channels))
    return HeaderInfo(int(info.width), int(info.height), channels, depth)


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of a JPEG file's bytes (its head suffices); 1 when the file
    is not a JPEG, has no EXIF block or no valid orientation entry."""
    if data[:2] != b"\xff\xd8":
        return 1
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        code = data[pos + 1]
        if code in (0xD9, 0xDA):  # end of image / start of scan: no EXIF before the pixels
            return 1
        if code == 0x01 or 0xD0 <= code <= 0xD7 or code == 0xFF:
            pos += 1 if code == 0xFF else 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        segment = data[pos + 4:pos + 2 + length]
        if code == 0xE1 and segment[:6] == b"Exif\x00\x00":
            return _tiff_orientation(segment[6:])
        pos += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 of a TIFF block (EXIF payload); 1 if absent or malformed."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 1
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == 0x0112 and kind == 3:  # SHORT
            value = struct.unpack(order + "H", entry[8:10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def file_orientation(path: str, data: bytes | None = None) -> int:
    """`exif_orientation` of a file (JPEG content only, whatever its name; its first 256 KiB
    are read when `data` is None); 1 for every other format."""
    if data is None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(len(_JPEG_START))
                if data != _JPEG_START:
                    return 1
                data += handle.read((1 << 18) - len(data))
        except OSError as err:
            raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err
    return exif_orientation(data)


_AXES_SWAPPED = (5, 6, 7, 8)  # the EXIF orientations that turn an image by 90 degrees


def upright_hw(height: int, width: int, orientation: int) -> tuple[int, int]:
    """(height, width) of a stored `height` x `width` image once `orient` has turned it."""
    return (width, height) if orientation in _AXES_SWAPPED else (height, width)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """`image` [H, W, ...] as EXIF `orientation` says to display it (1: unchanged; 6: rotated
    90 degrees clockwise; 8: counter-clockwise; 3: 180; 2/4: mirrored; 5/7: transposed)."""
    if orientation in _AXES_SWAPPED:
        image = np.swapaxes(image, 0, 1)  # 5 = transpose; 6, 7, 8 flip it further
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    for axis in flips:
        image = np.flip(image, axis)
    return np.ascontiguousarray(image) if orientation != 1 else image


def probe_header(path: str) -> HeaderInfo | None:
    """Size, channels and depth of a PNG/JPEG file, plus a truncation check.

    Formats are judged by content (a PNG named .jpg is probed as a PNG; a raw .npy array by
    its header, whatever its name). Returns None for other image formats (they are checked
    when decoded). Raises UnusableFile, also for a file that is no image (a video, a GIF...).
    Reads only the header and the last bytes, so the start-up scan of a large dataset
    stays cheap.
    """
    if raw.known(path):
        return _raw_header(path)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                raise UnusableFile(path, "empty file")
            # Header first: a file that is not an image at all should say so, not "truncated".
            handle.seek(0)
            kind = content_kind(path, handle.read(HEAD_BYTES))
            if kind == "npy":
                return _raw_header(path)
            if kind not in ("png", "jpeg"):
                return None
            handle.seek(0)
            info = _header_info(path, handle, kind)
            check_pixels(path, info.width, info.height)
            handle.seek(max(0, size - 64))
            check_complete(path, kind, handle.read())
            return info
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err


def image_size(path: str) -> tuple[int, int] | None:
    """(height, width) as stored, from the file's header without decoding it (any format
    imagesize reads: JPEG, PNG, BMP, TIFF, WebP, PPM/PGM...; raw .npy too), or None when
    unknown. The EXIF orientation is not applied (`file_orientation` says how to turn it)."""
    try:
        if raw.is_raw(path):
            head = _raw_header(path)
            return head.height, head.width
        width, height = imagesize.get(path, exif_rotation=False)
    except (OSError, ValueError, struct.error, IndexError, UnusableFile):
        return None
    return (int(height), int(width)) if width > 0 and height > 0 else None


def _raw_header(path: str) -> HeaderInfo:
    shape = raw.layout(path)[1]
    return HeaderInfo(shape[1], shape[0], raw.channels_of(shape), 8)


def _encoded(path: str, data: bytes | None) -> bytes | None:
    """The bytes to decode (`data`, else `read_file`), or None when the file is a raw .npy
    array (by content), which is memory-mapped instead."""
    if data is None:
        if raw.is_raw(path):
            return None
        data = read_file(path)
    return None if kind_from_head(data[:HEAD_BYTES]) == "npy" else data


def header_from_bytes(path: str, data: bytes) -> HeaderInfo | None:
    """The header of a file already in memory (no truncation check), judged by content: PNG
    and JPEG as `probe_header`, other images as far as imagesize reads them, a .npy array's
    shape; None for unrecognised content. Raises UnusableFile for an unreadable header."""
    kind = content_kind(path, data[:HEAD_BYTES])
    if kind is None:
        return None
    if kind == "npy":
        shape = raw.shape_from_bytes(path, data)
        if len(shape) not in (2, 3):
            raise UnusableFile(path, f"raw image must be [H, W] or [H, W, 3], not {shape}")
        return HeaderInfo(shape[1], shape[0], raw.channels_of(shape), 8)
    return _header_info(path, io.BytesIO(data), kind)


def read_file(path: str) -> bytes:
    """The bytes of an image file; UnusableFile if it cannot be read, is empty, truncated, is
    no image (by content: a video, a GIF...) or claims more than `MAX_DECODE_PIXELS`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err
    if not data:
        raise UnusableFile(path, "empty file")
    kind = content_kind(path, data[:HEAD_BYTES])
    if kind != "npy":
        check_complete(path, kind, data[-64:])
        check_claimed_size(path, data)
    return data


def _read_bytes(path: str, data: bytes | None = None) -> np.ndarray:
    return np.frombuffer(read_file(path) if data is None else data, dtype=np.uint8)


def reduced_shape(height: int, width: int, reduce: int) -> tuple[int, int]:
    """(rows, columns) of an image decoded at 1/reduce size (libjpeg rounds up)."""
    return -(-int(height) // reduce), -(-int(width) // reduce)


def reduction_for(height: int, width: int, min_side: int, max_reduce: int = 8) -> int:
    """The largest factor in {1, 2, 4, 8} (<= max_reduce) whose reduced short side is still
    >= min_side; 1 when min_side <= 0 (no reduction wanted)."""
    reduce = 1
    if min_side > 0:
        while reduce < max_reduce and min(height, width) // (2 * reduce) >= min_side:
            reduce *= 2
    return reduce


def _shrink(image: np.ndarray, reduce: int) -> np.ndarray:
    """A fully decoded image shrunk to `reduced_shape` (area averaging)."""
    rows, cols = reduced_shape(image.shape[0], image.shape[1], reduce)
    if (rows, cols) == image.shape[:2]:
        return image
    out = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)
    return out.reshape((rows, cols) + image.shape[2:])


def decode_rgb(path: str, reduce: int = 1, data: bytes | None = None) -> np.ndarray:
    """Decodes a colour image to uint8 RGB [H, W, 3].

    `reduce` in {1, 2, 4, 8} decodes at 1/reduce size, `reduced_shape` of the stored size
    (a JPEG decodes that way for less work; other formats are decoded in full and shrunk),
    then the JPEG's EXIF orientation is applied. `data`: the file's bytes when the caller has
    read them already (`read_file`).
    """
    data = _encoded(path, data)
    if data is None:
        image = raw.load(path, 3)
        return _shrink(np.asarray(image), reduce) if reduce > 1 else image
    if kind_from_head(data[:HEAD_BYTES]) == "tiff":  # the one format that holds floats
        check_finite(path, _decode_unchanged(path, data))
    reduced = reduce > 1 and data.startswith(_JPEG_START)
    image = cv2.imdecode(_read_bytes(path, data), _REDUCED_FLAGS[reduce if reduced else 1])
    if image is None:
        raise UnusableFile(path, "OpenCV cannot decode it (corrupt or unsupported format)")
    if reduce > 1 and not reduced:
        image = _shrink(image, reduce)
    return orient(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), file_orientation(path, data))


def _to_uint8(path: str, array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        note_once("alpha16", f"alpha file {path} is 16-bit: scaled to 8-bit "
                  "(other 16-bit alpha files are converted without a message)")
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if array.dtype in (np.float32, np.float64):
        check_finite(path, array)
        note_once("alpha_float", f"alpha file {path} is floating point: read as [0, 1]")
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise UnusableFile(path, f"unsupported alpha sample type {array.dtype}")


def _full_scale(array: np.ndarray) -> float:
    """The value meaning alpha = 1 for a sample type: 255, 65535, or 1.0 for floats."""
    return float(np.iinfo(array.dtype).max) if array.dtype.kind in "ui" else 1.0


def _grey_from_channels(path: str, channels: np.ndarray, what: str) -> np.ndarray:
    """The common grey level of `channels` [H, W, C], or UnusableFile if they disagree by
    more than `CHANNEL_TOLERANCE` levels of 255."""
    lo, hi = channels.min(axis=-1), channels.max(axis=-1)
    levels = 255.0 / _full_scale(channels)
    spread = int(round(float((hi - lo).max()) * levels)) if channels.size else 0
    if spread > CHANNEL_TOLERANCE:
        raise UnusableFile(path, f"{what} whose colour channels differ (by up to {spread} "
                           "levels): a colour picture, not a matte")
    note_once(f"alpha_{what}", f"alpha file {path} is {what} with equal channels: read as grey "
              "(other such files are converted without a message)")
    if channels.dtype == np.uint8:
        return ((lo.astype(np.uint16) + hi + 1) // 2).astype(np.uint8)
    return ((lo.astype(np.float64) + hi) / 2).astype(channels.dtype)


def _matte_plane(path: str, raw: np.ndarray) -> np.ndarray:
    """The matte [H, W] in a decoded file (any sample type), per the module's channel policy."""
    if raw.ndim == 2:
        return raw
    if raw.ndim != 3 or raw.shape[2] not in (1, 2, 3, 4):
        raise UnusableFile(path, f"unsupported alpha layout {raw.shape}")
    if raw.shape[2] == 1:
        return raw[:, :, 0]
    if raw.shape[2] in (2, 4):
        alpha = raw[:, :, -1]
        if float(alpha.min()) < _full_scale(raw):
            note_once("alpha_rgba", f"alpha file {path} has an alpha channel: using it "
                      "(other such files are converted without a message)")
            return np.ascontiguousarray(alpha)
        return _grey_from_channels(path, raw[:, :, :-1], "opaque RGBA")
    return _grey_from_channels(path, raw, "3-channel")


def _decode_unchanged(path: str, data: bytes) -> np.ndarray:
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UnusableFile(path, "OpenCV cannot decode it (corrupt or unsupported format)")
    return raw


def decode_alpha(path: str, reduce: int = 1, data: bytes | None = None,
                 orientation: int = 1) -> np.ndarray:
    """Decodes a matte to uint8 [H, W] (0..255), converting per the module policy, turned by
    `orientation`: its photo's EXIF orientation (`file_orientation` of the photo).

    `reduce` > 1: at 1/reduce size, `reduced_shape` (8-bit grey or colour JPEG mattes decode
    that way; other files are decoded in full, converted, then shrunk).
    """
    return orient(_decode_alpha(path, reduce, data), orientation)


def _decode_alpha(path: str, reduce: int = 1, data: bytes | None = None) -> np.ndarray:
    data = _encoded(path, data)
    if data is None:
        alpha = raw.load(path, 1)
        return _shrink(np.asarray(alpha), reduce) if reduce > 1 else alpha
    if reduce > 1:
        head = header_from_bytes(path, data) if data.startswith(_JPEG_START) else None
        if head is not None and head.bit_depth == 8 and head.channels in (1, 3):
            grey = head.channels == 1
            flags = _REDUCED_GREY_FLAGS[reduce] if grey else _REDUCED_FLAGS[reduce]
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if decoded is None:
                raise UnusableFile(path, "OpenCV cannot decode it (corrupt or unsupported format)")
            return decoded if grey else _grey_from_channels(path, decoded, "3-channel")
        return _shrink(_decode_alpha(path, 1, data), reduce)
    return _matte_plane(path, _to_uint8(path, _decode_unchanged(path, data)))


def decode_alpha_native(path: str, keep_uint8: bool = False) -> np.ndarray:
    """A matte at the file's own precision, same channel policy as `decode_alpha`: float64
    [H, W] in [0, 1] (a 16-bit file keeps its 65536 levels: evaluation scores against it),
    or with `keep_uint8` an 8-bit file's uint8 values (0..255) as they are."""
    data = _encoded(path, None)
    if data is None:
        plane = np.asarray(raw.load(path, 1))
    else:
        decoded = _decode_unchanged(path, data)
        if decoded.dtype.kind not in "uif":
            raise UnusableFile(path, f"unsupported alpha sample type {decoded.dtype}")
        check_finite(path, decoded)
        plane = _matte_plane(path, decoded)
    if keep_uint8 and plane.dtype == np.uint8:
        return np.ascontiguousarray(plane)
    return np.clip(plane.astype(np.float64) / _full_scale(plane), 0.0, 1.0)
