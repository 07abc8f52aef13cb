"""Refusals shared by every image reader: what a file's content is, whether it is complete,
whether its header claims a decompression bomb, whether its values are finite.

* Content, not extension (`content_kind`): a supported image under another image extension
  is read as what it is (one note per kind); content that is no image we read (a video, a
  GIF, a ZIP...) is refused saying what it is.
* Truncation (`check_complete`): OpenCV decodes a truncated JPEG without an error (the
  missing rows come out grey), so JPEG and PNG content is checked for its end marker (JPEG
  EOI, PNG IEND; trailing zero padding is tolerated).
* Decompression bombs (`check_pixels`, `check_claimed_size`): a header claiming more than
  `MAX_DECODE_PIXELS` pixels is refused before anything is allocated.
* Poisoned values (`check_finite`): a floating-point file holding NaN or infinity is refused
  by name, never silently clipped to 0 or 1.
"""

from __future__ import annotations

import io
import struct

import imagesize
import numpy as np

from modnet_jax.imaging.files import RAW_EXTENSION, UnusableFile, extension, note_once
from modnet_jax.imaging.signatures import HEAD_BYTES, IMAGE_KINDS, describe, kind_from_head

# Largest image a header may claim (16384 x 16384): above it a file is refused before it is
# decoded, so a small file cannot make a reader allocate gigabytes (OpenCV's own limit is 4x).
MAX_DECODE_PIXELS = 1 << 28

_PNG_END = b"IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"
_KIND_BY_EXTENSION = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp",
                      ".webp": "webp", ".tif": "tiff", ".tiff": "tiff", ".ppm": "pnm",
                      ".pgm": "pnm", RAW_EXTENSION: "npy"}
_NAMED = {".png": "a PNG", ".jpg": "a JPEG", ".jpeg": "a JPEG", RAW_EXTENSION: "a .npy array"}


def content_kind(path: str, head: bytes) -> str | None:
    """The image kind of a file's first bytes (`signatures.IMAGE_KINDS`), judged by content.

    Raises UnusableFile for content that is not an image we read (naming what it is), and for
    an unrecognised file named .png/.jpg/.npy (bad signature); None for other unrecognised
    files (OpenCV then tries them)."""
    kind = kind_from_head(head[:HEAD_BYTES])
    if kind in IMAGE_KINDS:
        if _KIND_BY_EXTENSION.get(extension(path)) not in (None, kind):
            note_once(f"mismatch_{kind}", f"{path} is {describe(kind)} despite its extension: "
                      "read as what it is (other such files are read without a message)")
        return kind
    named = _NAMED.get(extension(path))
    if kind is not None:
        raise UnusableFile(path, f"not {named or 'an image'} file: its content is "
                           f"{describe(kind)}")
    if named:
        raise UnusableFile(path, f"not {named} file (bad signature)")
    return None


def check_complete(path: str, kind: str | None, tail: bytes) -> None:
    """Raises UnusableFile when JPEG/PNG content lacks its end marker (i.e. is truncated)."""
    tail = tail.rstrip(b"\x00")
    if kind == "jpeg" and not tail.endswith(_JPEG_END):
        raise UnusableFile(path, "truncated JPEG (no end-of-image marker)")
    if kind == "png" and not tail.endswith(_PNG_END):
        raise UnusableFile(path, "truncated PNG (no IEND chunk)")


def check_pixels(path: str, width: int, height: int) -> None:
    if width * height > MAX_DECODE_PIXELS:
        raise UnusableFile(path, f"its header claims {width}x{height} = {width * height} "
                           f"pixels, above the {MAX_DECODE_PIXELS} that are decoded (a "
                           "decompression bomb?)")


def check_claimed_size(path: str, data: bytes) -> None:
    """`check_pixels` for the size a file's header claims (any format imagesize reads;
    files it cannot read are left to OpenCV, whose own limit is 4x higher)."""
    try:
        width, height = imagesize.get(io.BytesIO(data))
    except (ValueError, struct.error, IndexError, OSError):
        return
    check_pixels(path, int(width), int(height))


def check_finite(path: str, array: np.ndarray) -> None:
    """Refuses a floating-point image holding NaN or infinity (never clipped to 0 or 1)."""
    if array.dtype.kind == "f":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise UnusableFile(path, f"{bad} non-finite value(s) (NaN or infinity) in a "
                               "floating-point image")
