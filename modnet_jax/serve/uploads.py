"""Uploaded bytes -> an RGB image, with the limits and the answers the API documents.

* An upload is at most ``max_bytes`` long (413 otherwise, checked against Content-Length and
  again while reading, so a client that sends more than it announced is stopped too).
* Its kind is told from its first bytes (PNG, JPEG, WebP, BMP, TIFF), never from a name the
  client sends; anything else is 415. An empty upload is 400.
* It is written to ``UploadFolder`` (a private temporary folder, removed when the server
  stops) under a name the server makes up, read the way predict reads a file (EXIF
  orientation, truncated files refused) and deleted at once.
* The pixel count comes from the header before anything is decoded: above the cap
  (``--max-image-pixels``, as predict) is 422; this also stops decompression bombs (a small
  file that declares an enormous image). A file that does not decode is 400.

Messages never show the server's paths: the temporary file's name is replaced by "upload".
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from typing import Optional

import numpy as np

from modnet_jax.inference import InputError
from modnet_jax.serve.engine_adapter import EngineAdapter, TooManyPixels

SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"BM", ".bmp"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
)


class UploadError(Exception):
    """A refused upload: HTTP ``status`` and a one-line ``message`` for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def sniff(head: bytes) -> Optional[str]:
    """The file extension for an upload's first bytes, or None if it is no image we read."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    for signature, ext in SIGNATURES:
        if head.startswith(signature):
            return ext
    return None


class UploadFolder:
    """A private temporary folder for uploads (mode 0700), removed by ``close``."""

    def __init__(self, parent: Optional[str] = None):
        self.path = tempfile.mkdtemp(prefix="modnet_serve_", dir=parent)

    def new_path(self, ext: str) -> str:
        return os.path.join(self.path, uuid.uuid4().hex + ext)

    def prune(self, max_age: float) -> None:
        """Delete the files directly in the folder that are older than ``max_age`` seconds
        (results the page has handed over)."""
        limit = time.time() - max_age
        for entry in os.scandir(self.path):
            try:
                if entry.is_file() and entry.stat().st_mtime < limit:
                    os.remove(entry.path)
            except OSError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def check_length(content_length: Optional[str], max_bytes: int) -> None:
    """413 when the announced length is above the limit."""
    if content_length and content_length.isdigit() and int(content_length) > max_bytes:
        raise UploadError(413, too_large(max_bytes))


def too_large(max_bytes: int) -> str:
    return f"upload is larger than the limit of {max_bytes / 1e6:g} MB (--max-upload-mb)"


def decode_upload(data: bytes, folder: UploadFolder, adapter: EngineAdapter) -> np.ndarray:
    """RGB uint8 [H, W, 3] of an uploaded image; ``UploadError`` with the documented status."""
    if not data:
        raise UploadError(400, "empty upload: no image bytes were sent")
    ext = sniff(data[:16])
    if ext is None:
        raise UploadError(415, "not an image: send PNG, JPEG, WebP, BMP or TIFF bytes")
    path = folder.new_path(ext)
    try:
        with open(path, "wb") as handle:
            handle.write(data)
        return adapter.read(path)
    except TooManyPixels as exc:
        raise UploadError(422, _public(str(exc), path)) from None
    except InputError as exc:
        raise UploadError(400, _public(str(exc), path)) from None
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


def read_file_upload(path: str, adapter: EngineAdapter) -> np.ndarray:
    """As ``decode_upload`` for a file the web page's upload already wrote (kind from its
    bytes, not its name)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        raise UploadError(400, "empty upload: no image bytes were sent")
    if sniff(head) is None:
        raise UploadError(415, "not an image: send PNG, JPEG, WebP, BMP or TIFF bytes")
    try:
        return adapter.read(path)
    except TooManyPixels as exc:
        raise UploadError(422, _public(str(exc), path)) from None
    except InputError as exc:
        raise UploadError(400, _public(str(exc), path)) from None


def _public(message: str, path: str) -> str:
    return message.replace(path, "upload")
