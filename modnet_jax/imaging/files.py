"""Which files are images or videos, how a folder is listed, and how a bad file is reported.

One list of extensions for training data, inference and evaluation alike:

* `IMAGE_EXTENSIONS`: what OpenCV decodes (JPEG, PNG, BMP, WebP, TIFF, PPM/PGM) plus `.npy`,
  the raw uint8 arrays that `python -m modnet_jax.data.prepare --format raw` writes (read by
  memory mapping, see decode.py);
* `VIDEO_EXTENSIONS`: containers OpenCV's FFmpeg back end opens.

Files are matched across folders by *stem*: the path relative to the listed folder, without
extension, '/'-separated (`fgr/0000/00000.jpg` -> `0000/00000`), so nested datasets pair up.
"""

from __future__ import annotations

import logging
import os
import threading

# Messages about input files use one logger, whichever tool reads them (training data,
# inference, evaluation), so one logging filter shows or silences them all.
LOGGER = logging.getLogger("modnet_jax.data")

RAW_EXTENSION = ".npy"
JPEG_EXTENSIONS = (".jpg", ".jpeg")
IMAGE_EXTENSIONS = JPEG_EXTENSIONS + (".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
                                      RAW_EXTENSION)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


class InputError(Exception):
    """A user-facing problem with one file (unreadable, unwritable, empty...): a one-line
    message that starts with the file's path. Command-line tools print it as `error: ...`."""


class UnusableFile(InputError):
    """One file that cannot be used; carries the path and a human-readable reason (training
    data skips such a file; inference and evaluation report it as an `InputError`)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def extension(path) -> str:
    """Lower-case extension with its dot ('' when there is none)."""
    return os.path.splitext(str(path))[1].lower()


def is_image_path(path) -> bool:
    return extension(path) in IMAGE_EXTENSIONS


def is_video_path(path) -> bool:
    return extension(path) in VIDEO_EXTENSIONS


def list_files(folder: str, extensions=IMAGE_EXTENSIONS, recursive: bool = True
               ) -> dict[str, str]:
    """{stem: path} for files under `folder` (any depth; only its own files with
    `recursive=False`), sorted by stem; hidden files skipped.

    Two files with one stem (a.jpg and a.png, or a.npy from `prepare --format raw` next to an
    encoded copy): the first in sorted order is kept, and a warning names one such pair.
    """
    found: dict[str, str] = {}
    shadowed: list[tuple[str, str]] = []  # (unused path, the path kept for its stem)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        if not recursive:
            dirnames.clear()
        for name in sorted(filenames):
            if name.startswith(".") or extension(name) not in extensions:
                continue
            path = os.path.join(dirpath, name)
            stem = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, "/")
            kept = found.setdefault(stem, path)
            if kept != path:
                shadowed.append((path, kept))
    if shadowed:
        LOGGER.warning("%s: %d file(s) share a name with another file and are not used "
                       "(kept: the first in sorted order), e.g. %s is shadowed by %s",
                       folder, len(shadowed), *shadowed[0])
    return dict(sorted(found.items()))


# Format conversions (16-bit mattes, RGBA...) are worth one message per process, not one per
# file; decoding runs on Grain's prefetch threads, hence the lock.
_LOCK = threading.Lock()
_NOTES: set[str] = set()


def note_once(kind: str, message: str) -> bool:
    """Logs an informational `message` the first time a `kind` of conversion happens."""
    with _LOCK:
        if kind in _NOTES:
            return False
        _NOTES.add(kind)
    LOGGER.warning("%s", message)
    return True


def clear_notes() -> None:
    """Forgets which conversions were reported (tests start from a clean slate)."""
    with _LOCK:
        _NOTES.clear()
