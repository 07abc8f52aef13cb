"""Reading images, mattes and video frames with OpenCV, and cheap header checks.

Policies decided here (documented once, relied on by every source):

* Colour images are decoded to 8-bit RGB, upright: a JPEG's EXIF orientation tag is applied
  (as photo viewers do). A matte is taken to be in its photo's stored pixel order, so the
  photo's orientation is applied to the matte too (the matte file's own tag is not used):
  the pair always lines up, whatever the formats. `exif_orientation` reads the tag, `orient`
  applies it; OpenCV's own rotation is always turned off (it would rotate a JPEG photo but
  not its PNG matte).
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
import mmap
import os
import struct
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from modnet_jax.data.report import UnusableFile, note_once

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".npy")
# Raw arrays (`prepare --format raw`): uint8 [H, W, 3] RGB or [H, W] matte, memory-mapped.
RAW_EXTENSION = ".npy"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# Largest per-pixel channel disagreement still read as a grey matte (JPEG chroma noise).
CHANNEL_TOLERANCE = 8

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
# PNG colour type -> channels as OpenCV's IMREAD_UNCHANGED returns them.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}
# JPEG start-of-frame markers (C4 = DHT, C8 = JPG extension, CC = DAC are not frames).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
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
JPEG_EXTENSIONS = (".jpg", ".jpeg")


@dataclass(frozen=True)
class HeaderInfo:
    """What a PNG/JPEG header says, read without decoding the pixels."""

    width: int
    height: int
    channels: int
    bit_depth: int


def extension(path: str) -> str:
    return os.path.splitext(str(path))[1].lower()


def _check_complete(path: str, tail: bytes) -> None:
    """Raises UnusableFile when a JPEG/PNG file lacks its end marker (i.e. is truncated)."""
    ext = extension(path)
    tail = tail.rstrip(b"\x00")
    if ext in (".jpg", ".jpeg") and not tail.endswith(_JPEG_END):
        raise UnusableFile(path, "truncated JPEG (no end-of-image marker)")
    if ext == ".png" and not tail.endswith(_PNG_END):
        raise UnusableFile(path, "truncated PNG (no IEND chunk)")


def _png_header(path: str, head: bytes) -> HeaderInfo:
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise UnusableFile(path, "not a PNG file (bad signature or header)")
    width, height = struct.unpack(">II", head[16:24])
    depth, colour_type = head[24], head[25]
    if colour_type not in _PNG_CHANNELS or width == 0 or height == 0:
        raise UnusableFile(path, "corrupt PNG header")
    return HeaderInfo(width, height, _PNG_CHANNELS[colour_type], depth)


def _jpeg_header(path: str, handle) -> HeaderInfo:
    """Walks the JPEG marker segments (seeking past them) until the frame header."""
    if handle.read(2) != b"\xff\xd8":
        raise UnusableFile(path, "not a JPEG file (bad signature)")
    while True:
        byte = handle.read(1)
        if byte != b"\xff":
            raise UnusableFile(path, "corrupt JPEG header (marker expected)")
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes
            marker = handle.read(1)
        if not marker:
            raise UnusableFile(path, "truncated JPEG header")
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        raw = handle.read(2)
        if len(raw) < 2:
            raise UnusableFile(path, "truncated JPEG header")
        length = struct.unpack(">H", raw)[0]
        if code in _JPEG_SOF:
            frame = handle.read(6)
            if len(frame) < 6:
                raise UnusableFile(path, "truncated JPEG header")
            depth, height, width, channels = struct.unpack(">BHHB", frame)
            if width == 0 or height == 0:
                raise UnusableFile(path, "corrupt JPEG header (zero size)")
            return HeaderInfo(width, height, channels, depth)
        if code in (0xD9, 0xDA) or length < 2:
            raise UnusableFile(path, "corrupt JPEG header (no frame before the image data)")
        handle.seek(length - 2, os.SEEK_CUR)


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
    """`exif_orientation` of a file (JPEG only; its first 256 KiB are read when `data` is
    None); 1 for every other format."""
    if extension(path) not in JPEG_EXTENSIONS:
        return 1
    if data is None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(1 << 18)
        except OSError as err:
            raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err
    return exif_orientation(data)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """`image` [H, W, ...] as EXIF `orientation` says to display it (1: unchanged; 6: rotated
    90 degrees clockwise; 8: counter-clockwise; 3: 180; 2/4: mirrored; 5/7: transposed)."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # 5 = transpose; 6, 7, 8 flip it further
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    for axis in flips:
        image = np.flip(image, axis)
    return np.ascontiguousarray(image) if orientation != 1 else image


def probe_header(path: str) -> HeaderInfo | None:
    """Size, channels and depth of a PNG/JPEG file, plus a truncation check.

    Returns None for other formats (they are checked when decoded). Raises UnusableFile.
    Reads only the header and the last bytes, so the start-up scan of a large dataset
    stays cheap.
    """
    ext = extension(path)
    if ext == RAW_EXTENSION:
        return _raw_header(path)
    if ext not in (".png", ".jpg", ".jpeg"):
        return None
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                raise UnusableFile(path, "empty file")
            # Header first: a file that is not an image at all should say so, not "truncated".
            handle.seek(0)
            if ext == ".png":
                info = _png_header(path, handle.read(32))
            else:
                info = _jpeg_header(path, handle)
            handle.seek(max(0, size - 64))
            _check_complete(path, handle.read())
            return info
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err


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


def header_from_bytes(path: str, data: bytes) -> HeaderInfo | None:
    """`probe_header` for a file already in memory (no truncation check); None if not PNG/JPEG."""
    ext = extension(path)
    if ext == ".png":
        return _png_header(path, data[:32])
    if ext in JPEG_EXTENSIONS:
        return _jpeg_header(path, io.BytesIO(data))
    return None


def read_file(path: str) -> bytes:
    """The bytes of an image file; UnusableFile if it cannot be read, is empty or truncated."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err
    if not data:
        raise UnusableFile(path, "empty file")
    _check_complete(path, data[-64:])
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
    if extension(path) == RAW_EXTENSION:
        image = load_raw(path, 3)
        return _shrink(np.asarray(image), reduce) if reduce > 1 else image
    reduced = reduce > 1 and extension(path) in JPEG_EXTENSIONS
    data = read_file(path) if data is None else data
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
        note_once("alpha_float", f"alpha file {path} is floating point: read as [0, 1]")
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise UnusableFile(path, f"unsupported alpha sample type {array.dtype}")


def _grey_from_channels(path: str, channels: np.ndarray, what: str) -> np.ndarray:
    """The common grey level of `channels` [H, W, C], or UnusableFile if they disagree."""
    lo, hi = channels.min(axis=-1), channels.max(axis=-1)
    spread = int((hi - lo).max()) if channels.size else 0
    if spread > CHANNEL_TOLERANCE:
        raise UnusableFile(path, f"{what} whose colour channels differ (by up to {spread} "
                           "levels): a colour picture, not a matte")
    note_once(f"alpha_{what}", f"alpha file {path} is {what} with equal channels: read as grey "
              "(other such files are converted without a message)")
    return ((lo.astype(np.uint16) + hi + 1) // 2).astype(np.uint8)


def decode_alpha(path: str, reduce: int = 1, data: bytes | None = None,
                 orientation: int = 1) -> np.ndarray:
    """Decodes a matte to uint8 [H, W] (0..255), converting per the module policy, turned by
    `orientation`: its photo's EXIF orientation (`file_orientation` of the photo).

    `reduce` > 1: at 1/reduce size, `reduced_shape` (8-bit grey or colour JPEG mattes decode
    that way; other files are decoded in full, converted, then shrunk).
    """
    return orient(_decode_alpha(path, reduce, data), orientation)


def _decode_alpha(path: str, reduce: int = 1, data: bytes | None = None) -> np.ndarray:
    if extension(path) == RAW_EXTENSION:
        alpha = load_raw(path, 1)
        return _shrink(np.asarray(alpha), reduce) if reduce > 1 else alpha
    data = read_file(path) if data is None else data
    if reduce > 1:
        head = header_from_bytes(path, data) if extension(path) in JPEG_EXTENSIONS else None
        if head is not None and head.bit_depth == 8 and head.channels in (1, 3):
            grey = head.channels == 1
            flags = _REDUCED_GREY_FLAGS[reduce] if grey else _REDUCED_FLAGS[reduce]
            raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            if raw is None:
                raise UnusableFile(path, "OpenCV cannot decode it (corrupt or unsupported format)")
            return raw if grey else _grey_from_channels(path, raw, "3-channel")
        return _shrink(_decode_alpha(path, 1, data), reduce)
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UnusableFile(path, "OpenCV cannot decode it (corrupt or unsupported format)")
    raw = _to_uint8(path, raw)
    if raw.ndim == 2:
        return raw
    if raw.ndim != 3 or raw.shape[2] not in (1, 2, 3, 4):
        raise UnusableFile(path, f"unsupported alpha layout {raw.shape}")
    if raw.shape[2] == 1:
        return raw[:, :, 0]
    if raw.shape[2] in (2, 4):
        alpha = raw[:, :, -1]
        if int(alpha.min()) < 255:
            note_once("alpha_rgba", f"alpha file {path} has an alpha channel: using it "
                      "(other such files are converted without a message)")
            return np.ascontiguousarray(alpha)
        return _grey_from_channels(path, raw[:, :, :-1], "opaque RGBA")
    return _grey_from_channels(path, raw, "3-channel")


def count_video_frames(path: str) -> int:
    """Frame count reported by the container (0 if OpenCV cannot open the video)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()


class VideoFrameReader:
    """Reads single frames by index, keeping a few captures open per process.

    Opening a video costs far more than seeking in it, so captures are cached; they are
    not picklable, so the cache is dropped when the reader is sent to a worker process.
    A capture has one read position, so reads are serialised (Grain prefetches on threads).
    """

    def __init__(self, max_open: int = 4):
        self.max_open = max_open
        self._open: dict[str, cv2.VideoCapture] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"max_open": self.max_open}

    def __setstate__(self, state):
        self.__init__(state["max_open"])

    def read(self, path: str, index: int) -> np.ndarray:
        with self._lock:
            frame = self._read_locked(path, index)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _read_locked(self, path: str, index: int) -> np.ndarray:
        capture = self._open.get(path)
        if capture is None:
            if len(self._open) >= self.max_open:
                oldest = next(iter(self._open))
                self._open.pop(oldest).release()
            capture = cv2.VideoCapture(str(path))
            self._open[path] = capture
        if not capture.isOpened():
            raise UnusableFile(path, "OpenCV cannot open the video")
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if not ok or frame is None:
            raise UnusableFile(f"{path}#{index}", "frame cannot be read (past the end or corrupt)")
        return frame
