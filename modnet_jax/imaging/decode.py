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
* Files are identified by their content (`signatures.kind_of`), the extension being only a
  hint: an intact PNG named ``.jpg`` is read as a PNG, a ``.npy`` array named ``.png`` is
  mapped as raw; a file that is something else (a video, a GIF, a ZIP...) is refused with
  what it is.
* Poisoned data: a floating-point file (TIFF) holding NaN or infinity is refused by name, never
  silently clipped; a header that claims more than `MAX_DECODE_PIXELS` pixels (a
  decompression bomb) is refused before anything is allocated.
* Truncated files: OpenCV decodes a truncated JPEG without an error (the missing rows come
  out grey), so JPEG and PNG files are checked for their end marker (JPEG EOI, PNG IEND;
  trailing zero padding is tolerated) both at start-up and when decoded.
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
* Raw files (`.npy`, written by `prepare --format raw`): uint8 RGB [H, W, 3] or matte [H, W]
  arrays, memory-mapped read-only instead of decoded, so reading one costs page copies of
  the rows a crop touches. Their header is checked like a PNG/JPEG header (dtype, layout,
  length); the returned arrays are read-only views of the file.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import struct
from dataclasses import dataclass

import cv2
import imagesize
import numpy as np

from modnet_jax.imaging.files import RAW_EXTENSION, UnusableFile, extension
from modnet_jax.imaging.files import note_once
from modnet_jax.imaging.signatures import HEAD_BYTES, IMAGE_KINDS, describe, kind_from_head

# Largest per-pixel channel disagreement still read as a grey matte (JPEG chroma noise).
CHANNEL_TOLERANCE = 8
# Largest image a header may claim (16384 x 16384): above it a file is refused before it is
# decoded, so a small file cannot make a reader allocate gigabytes (OpenCV's own limit is 4x).
MAX_DECODE_PIXELS = 1 << 28

_PNG_END = b"IEND\xaeB`\x82"
_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
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


def content_kind(path: str, head: bytes) -> str | None:
    """The image kind of a file's first bytes (`signatures.IMAGE_KINDS`), judged by content.

    Raises UnusableFile for content that is not an image we read (naming what it is), and for
    an unrecognised file named .png/.jpg (bad signature); None for other unrecognised files
    (OpenCV then tries them)."""
    kind = kind_from_head(head[:HEAD_BYTES])
    if kind in IMAGE_KINDS:
        if _expected_kind(path) not in (None, kind):
            note_once(f"mismatch_{kind}", f"{path} is {describe(kind)} despite its extension: "
                      "read as what it is (other such files are read without a message)")
        return kind
    named = {".png": "a PNG", ".jpg": "a JPEG", ".jpeg": "a JPEG",
             RAW_EXTENSION: "a .npy array"}.get(extension(path))
    if kind is not None:
        raise UnusableFile(path, f"not {named or 'an image'} file: its content is "
                           f"{describe(kind)}")
    if named:
        raise UnusableFile(path, f"not {named} file (bad signature)")
    return None


_KIND_BY_EXTENSION = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp",
                      ".webp": "webp", ".tif": "tiff", ".tiff": "tiff", ".ppm": "pnm",
                      ".pgm": "pnm", RAW_EXTENSION: "npy"}


def _expected_kind(path: str) -> str | None:
    return _KIND_BY_EXTENSION.get(extension(path))


def _check_complete(path: str, kind: str | None, tail: bytes) -> None:
    """Raises UnusableFile when a JPEG/PNG file lacks its end marker (i.e. is truncated)."""
    tail = tail.rstrip(b"\x00")
    if kind == "jpeg" and not tail.endswith(_JPEG_END):
        raise UnusableFile(path, "truncated JPEG (no end-of-image marker)")
    if kind == "png" and not tail.endswith(_PNG_END):
        raise UnusableFile(path, "truncated PNG (no IEND chunk)")


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
    if path in _RAW_HEADERS:
        return _RAW_HEADERS[path][0]
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
            _check_pixels(path, info.width, info.height)
            handle.seek(max(0, size - 64))
            _check_complete(path, kind, handle.read())
            return info
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err


def _check_pixels(path: str, width: int, height: int) -> None:
    if width * height > MAX_DECODE_PIXELS:
        raise UnusableFile(path, f"its header claims {width}x{height} = {width * height} "
                           f"pixels, above the {MAX_DECODE_PIXELS} that are decoded (a "
                           "decompression bomb?)")


def _check_claimed_size(path: str, data: bytes) -> None:
    """`_check_pixels` for the size a file's header claims (any format imagesize reads;
    files it cannot read are left to OpenCV, whose own limit is 4x higher)."""
    try:
        width, height = imagesize.get(io.BytesIO(data))
    except (ValueError, struct.error, IndexError, OSError):
        return
    _check_pixels(path, int(width), int(height))


def _check_finite(path: str, array: np.ndarray) -> None:
    """Refuses a floating-point image holding NaN or infinity (never clipped to 0 or 1)."""
    if array.dtype.kind == "f":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise UnusableFile(path, f"{bad} non-finite value(s) (NaN or infinity) in a "
                               "floating-point image")


_RAW_HEADERS: dict = {}  # path -> (HeaderInfo, data offset, shape): .npy headers parsed once


def _raw_layout(path: str) -> tuple:
    """(HeaderInfo, data offset, shape) of a raw .npy image, checking dtype, layout and file
    length; cached per process (parsing a .npy header costs more than mapping the file)."""
    known = _RAW_HEADERS.get(path)
    if known is not None:
        return known
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(handle)
            offset = handle.tell()
            size = handle.seek(0, os.SEEK_END)
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err
    except ValueError as err:
        raise UnusableFile(path, f"not a .npy array file ({err})") from err
    if dtype != np.uint8 or fortran or len(shape) not in (2, 3) or \
            (len(shape) == 3 and shape[2] not in (1, 3)) or min(shape[:2]) == 0:
        raise UnusableFile(path, f"raw image must be uint8 [H, W] or [H, W, 3] in C order, "
                           f"not {dtype} {shape}{' (Fortran order)' if fortran else ''}")
    if size - offset < int(np.prod(shape)):
        raise UnusableFile(path, "truncated .npy file (fewer bytes than its shape needs)")
    head = HeaderInfo(int(shape[1]), int(shape[0]), 1 if len(shape) == 2 else int(shape[2]), 8)
    _RAW_HEADERS[path] = head, offset, tuple(int(n) for n in shape)
    return _RAW_HEADERS[path]


def _raw_header(path: str) -> HeaderInfo:
    return _raw_layout(path)[0]


def load_raw(path: str, channels: int) -> np.ndarray:
    """A raw .npy image, memory-mapped read-only (no decoding: pages are read as the crop
    touches them): uint8 [H, W, 3] for channels=3, [H, W] for channels=1."""
    head, offset, shape = _raw_layout(path)
    if head.channels != channels:
        what = "an RGB image [H, W, 3]" if channels == 3 else "a matte [H, W]"
        raise UnusableFile(path, f"raw file has {head.channels} channel(s); expected {what}")
    try:
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        array = np.frombuffer(mapped, np.uint8, int(np.prod(shape)), offset)
    except (OSError, ValueError) as err:  # e.g. the file shrank since its header was read
        _RAW_HEADERS.pop(path, None)
        raise UnusableFile(path, f"cannot map the .npy file ({err})") from err
    return array.reshape((head.height, head.width, 3) if channels == 3 else shape[:2])


def image_size(path: str) -> tuple[int, int] | None:
    """(height, width) as stored, from the file's header without decoding it (any format
    imagesize reads: JPEG, PNG, BMP, TIFF, WebP, PPM/PGM...; raw .npy too), or None when
    unknown. The EXIF orientation is not applied (`file_orientation` says how to turn it)."""
    try:
        if path in _RAW_HEADERS or _is_npy(path):
            head = _raw_header(path)
            return head.height, head.width
        width, height = imagesize.get(path, exif_rotation=False)
    except (OSError, ValueError, struct.error, IndexError, UnusableFile):
        return None
    return (int(height), int(width)) if width > 0 and height > 0 else None


def _is_npy(path: str) -> bool:
    """Whether a file holds a .npy array (by content; only files named .npy are opened to
    see, the others show it in the bytes `read_file` returns)."""
    if extension(path) != RAW_EXTENSION:
        return False
    try:
        with open(path, "rb") as handle:
            return kind_from_head(handle.read(HEAD_BYTES)) == "npy"
    except OSError:
        return False


def _encoded(path: str, data: bytes | None) -> bytes | None:
    """The bytes to decode (`data`, else `read_file`), or None when the file is a raw .npy
    array (by content), which is memory-mapped instead."""
    if data is None:
        if path in _RAW_HEADERS or _is_npy(path):
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
        try:
            stream = io.BytesIO(data[:4096])
            version = np.lib.format.read_magic(stream)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape = read(stream)[0]
        except ValueError as err:
            raise UnusableFile(path, f"not a .npy array file ({err})") from err
        if len(shape) not in (2, 3):
            raise UnusableFile(path, f"raw image must be [H, W] or [H, W, 3], not {shape}")
        return HeaderInfo(int(shape[1]), int(shape[0]), 1 if len(shape) == 2 else shape[2], 8)
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
        _check_complete(path, kind, data[-64:])
        _check_claimed_size(path, data)
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
        image = load_raw(path, 3)
        return _shrink(np.asarray(image), reduce) if reduce > 1 else image
    if data.startswith(b"II*\x00") or data.startswith(b"MM\x00*"):  # TIFF: maybe floats
        _check_finite(path, _decode_unchanged(path, data))
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
        _check_finite(path, array)
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
        alpha = load_raw(path, 1)
        return _shrink(np.asarray(alpha), reduce) if reduce > 1 else alpha
    if reduce > 1:
        head = header_from_bytes(path, data) if data.startswith(_JPEG_START) else None
        if head is not None and head.bit_depth == 8 and head.channels in (1, 3):
            grey = head.channels == 1
            flags = _REDUCED_GREY_FLAGS[reduce] if grey else _REDUCED_FLAGS[reduce]
            raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if raw is None:
                raise UnusableFile(path, "OpenCV cannot decode it (corrupt or unsupported format)")
            return raw if grey else _grey_from_channels(path, raw, "3-channel")
        return _shrink(_decode_alpha(path, 1, data), reduce)
    return _matte_plane(path, _to_uint8(path, _decode_unchanged(path, data)))


def decode_alpha_native(path: str, keep_uint8: bool = False) -> np.ndarray:
    """A matte at the file's own precision, same channel policy as `decode_alpha`: float64
    [H, W] in [0, 1] (a 16-bit file keeps its 65536 levels: evaluation scores against it),
    or with `keep_uint8` an 8-bit file's uint8 values (0..255) as they are."""
    data = _encoded(path, None)
    if data is None:
        plane = np.asarray(load_raw(path, 1))
    else:
        raw = _decode_unchanged(path, data)
        if raw.dtype.kind not in "uif":
            raise UnusableFile(path, f"unsupported alpha sample type {raw.dtype}")
        _check_finite(path, raw)
        plane = _matte_plane(path, raw)
    if keep_uint8 and plane.dtype == np.uint8:
        return np.ascontiguousarray(plane)
    return np.clip(plane.astype(np.float64) / _full_scale(plane), 0.0, 1.0)
