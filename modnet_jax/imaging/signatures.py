"""What a file is, by its content: the signature ("magic number") at its start.

The extension is only a hint. Readers ask `kind_of` and decode by what the bytes are: an
intact PNG named ``.jpg`` is read as the PNG it is, and a file whose content is no image we
read is refused with what it really is ("an MP4 video", "a ZIP archive (a PyTorch
checkpoint?)"), not as a "truncated JPEG".

Kinds (`KINDS`): the image formats OpenCV decodes for us (``jpeg``, ``png``, ``bmp``,
``webp``, ``tiff``, ``pnm``), ``npy`` (raw arrays), the video containers OpenCV's FFmpeg back
end opens (``mp4``, ``avi``, ``matroska``, ``mpeg``, ``asf``), and kinds we only name in a
refusal (``gif``, ``exr``, ``pfm``, ``zip``, ``pdf``, ``gzip``, ``json``, ``text``).
"""

from __future__ import annotations

from typing import Optional

HEAD_BYTES = 32  # enough for every signature below

IMAGE_KINDS = ("jpeg", "png", "bmp", "webp", "tiff", "pnm", "npy")
VIDEO_KINDS = ("mp4", "avi", "matroska", "mpeg", "asf")

# kind -> how a message names it
_NAMES = {
    "jpeg": "a JPEG image", "png": "a PNG image", "bmp": "a BMP image", "webp": "a WebP image",
    "tiff": "a TIFF image", "pnm": "a PPM/PGM image", "npy": "a NumPy .npy array",
    "mp4": "an MP4/QuickTime video", "avi": "an AVI video", "matroska": "a Matroska/WebM video",
    "mpeg": "an MPEG video", "asf": "a WMV/ASF video", "gif": "a GIF image (not supported)",
    "exr": "an OpenEXR image (not supported)", "pfm": "a PFM float image (not supported)",
    "zip": "a ZIP archive (a PyTorch checkpoint?)", "pdf": "a PDF document",
    "gzip": "a gzip archive", "json": "a JSON file", "text": "a text file",
}


def kind_from_head(head: bytes) -> Optional[str]:
    """The kind of a file from its first `HEAD_BYTES` bytes, or None when unrecognised."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return "pnm"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "exr"
    if head[:2] in (b"PF", b"Pf") and head[2:3] in (b"\n", b"\r", b" "):
        return "pfm"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "json"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "text"
    return None


def kind_of(path: str) -> Optional[str]:
    """`kind_from_head` of a file's first bytes; None when unrecognised or unreadable (the
    reader that opens it next reports why it cannot)."""
    try:
        with open(path, "rb") as handle:
            return kind_from_head(handle.read(HEAD_BYTES))
    except OSError:
        return None


def describe(kind: Optional[str]) -> str:
    """How a message names a kind ("a PNG image"); "of unknown content" for None."""
    return _NAMES.get(kind, "of unknown content") if kind else "of unknown content"
