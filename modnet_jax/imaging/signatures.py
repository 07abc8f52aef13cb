"""What a file is, by its content: the signature ("magic number") at its start.

The extension is only a hint. Readers ask `kind_of` and decode by what the bytes are: an
intact PNG named ``.jpg`` is read as the PNG it is, and a file whose content is no image we
read is refused with what it really is ("an MP4 video", "a ZIP archive (a PyTorch
checkpoint?)"), not as a "truncated JPEG".

Kinds (`KINDS`): the image formats OpenCV decodes for us (``jpeg``, ``png``, ``bmp``,
``webp``, ``tiff``, ``pnm``), ``npy`` (raw arrays), the video containers OpenCV's FFmpeg back
end opens (``mp4``, ``avi``, ``matroska``, ``mpeg``, ``asf``), model weights (``onnx``: an
ONNX ``ModelProto``; ``torch``: ``torch.save``'s ZIP archive or its legacy pickle), and kinds
we only name in a refusal (``gif``, ``exr``, ``pfm``, ``zip``, ``pickle``, ``pdf``, ``gzip``,
``json``, ``text``).
"""

from __future__ import annotations

import struct
from typing import Optional

HEAD_BYTES = 32  # enough for every signature below but torch's (its archive name: `kind_of`)

IMAGE_KINDS = ("jpeg", "png", "bmp", "webp", "tiff", "pnm", "npy")
VIDEO_KINDS = ("mp4", "avi", "matroska", "mpeg", "asf")
WEIGHTS_KINDS = ("onnx", "torch")

# kind -> how a message names it
_NAMES = {
    "jpeg": "a JPEG image", "png": "a PNG image", "bmp": "a BMP image", "webp": "a WebP image",
    "tiff": "a TIFF image", "pnm": "a PPM/PGM image", "npy": "a NumPy .npy array",
    "mp4": "an MP4/QuickTime video", "avi": "an AVI video", "matroska": "a Matroska/WebM video",
    "mpeg": "an MPEG video", "asf": "a WMV/ASF video", "gif": "a GIF image (not supported)",
    "exr": "an OpenEXR image (not supported)", "pfm": "a PFM float image (not supported)",
    "onnx": "an ONNX model", "torch": "PyTorch weights (torch.save)", "zip": "a ZIP archive",
    "pickle": "a Python pickle", "pdf": "a PDF document",
    "gzip": "a gzip archive", "json": "a JSON file", "text": "a text file",
}


# torch.save's legacy (non-ZIP) format: a protocol-2 pickle of its magic number first.
_TORCH_LEGACY = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# ModelProto's fields after ir_version (field 1, a varint, written first by every exporter):
# the protobuf tags of producer_name, producer_version, domain, model_version, doc_string,
# graph, opset_import, metadata_props.
_ONNX_SECOND_TAGS = (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72)
# The entries torch.save writes in its ZIP archive, "<archive>/data.pkl" first.
_TORCH_ENTRIES = ("data.pkl", "version", ".format_version", "byteorder")


def _onnx_model(head: bytes) -> bool:
    """An ONNX ``ModelProto``: the tag of ir_version (0x08), a small version (1 to 15), then
    the tag of another ModelProto field."""
    return (len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 15
            and head[2] in _ONNX_SECOND_TAGS)


def _zip_kind(handle, head: bytes) -> str:
    """"torch" for a ZIP archive whose first entry is torch.save's, else "zip"."""
    if len(head) < 30:
        return "zip"
    name_length = struct.unpack("<H", head[26:28])[0]
    handle.seek(30)
    name = handle.read(name_length).decode("utf-8", "replace")
    return "torch" if name.rpartition("/")[2] in _TORCH_ENTRIES and "/" in name else "zip"


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
        return "zip"  # "torch" when its first entry is torch's (`kind_of` reads that far)
    if head.startswith(_TORCH_LEGACY):
        return "torch"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if _onnx_model(head):
        return "onnx"
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
            head = handle.read(HEAD_BYTES)
            kind = kind_from_head(head)
            return _zip_kind(handle, head) if kind == "zip" else kind
    except OSError:
        return None


def describe(kind: Optional[str]) -> str:
    """How a message names a kind ("a PNG image"); "of unknown content" for None."""
    return _NAMES.get(kind, "of unknown content") if kind else "of unknown content"
