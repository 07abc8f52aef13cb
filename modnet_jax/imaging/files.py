"""Which files are images or videos, how a folder is listed, and how a bad file is reported.

One list of extensions for training data, inference and evaluation alike:

* `IMAGE_EXTENSIONS`: what OpenCV decodes (JPEG, PNG, BMP, WebP, TIFF, PPM/PGM) plus `.npy`,
  the raw uint8 arrays that `python -m modnet_jax.data.prepare --format raw` writes (read by
  memory mapping, see decode.py);
* `VIDEO_EXTENSIONS`: containers OpenCV's FFmpeg back end opens.

Files are matched across folders by *stem*: the path relative to the listed folder, without
extension, '/'-separated (`fgr/0000/00000.jpg` -> `0000/00000`), so nested datasets pair up.

Folders and patterns are walked by `walk` and `expand_pattern`: symbolic links to folders are
followed, but never into a folder already entered (a link to a parent makes a loop that a
plain ``glob('**')`` follows ~40 levels deep), and one file reached by several paths (links)
is listed once, under the first path found.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import threading
from typing import Iterator, List, Optional

from modnet_jax.imaging.signatures import IMAGE_KINDS, VIDEO_KINDS, kind_of

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


def identity(path: str):
    """What makes two paths one file or folder: (device, inode) of what they point to; the
    absolute path when it cannot be read (a broken link)."""
    try:
        info = os.stat(path)
    except OSError:
        return os.path.abspath(path)
    return info.st_dev, info.st_ino


def walk(root: str, recursive: bool = True, skipped_dirs: Optional[list] = None
         ) -> Iterator[str]:
    """The files under `root`, each folder's own in name order before its sub-folders (in
    name order), each file once; links to folders are followed, never into a folder already
    entered. `recursive=False`: only `root`'s own files; its sub-folders are appended to
    `skipped_dirs` (when given) instead."""
    seen = set()
    for dirpath, _, filenames in _loop_free(root, recursive, skipped_dirs):
        for name in filenames:
            path = os.path.join(dirpath, name)
            key = identity(path)
            if key not in seen:
                seen.add(key)
                yield path


def _loop_free(root: str, recursive: bool = True, skipped_dirs: Optional[list] = None):
    """`os.walk(root)` following links to folders, never into a folder already entered:
    (folder, its sub-folders to enter, its files), names sorted."""
    entered = {identity(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        if not recursive:
            if skipped_dirs is not None:
                skipped_dirs.extend(os.path.join(dirpath, d) for d in dirnames)
            dirnames.clear()
        kept = []
        for name in dirnames:
            key = identity(os.path.join(dirpath, name))
            if key not in entered:
                entered.add(key)
                kept.append(name)
        dirnames[:] = kept
        yield dirpath, kept, sorted(filenames)


def _matches(parts: List[str], names: List[str]) -> bool:
    """Whether the path components `names` match the pattern components `parts` as glob's
    would ('**' = zero or more folders; names starting with '.' only match a pattern
    component that starts with '.')."""
    if not parts:
        return not names
    head = parts[0]
    if head == "**":
        for skip in range(len(names) + 1):
            if skip and names[skip - 1].startswith("."):
                return False
            if _matches(parts[1:], names[skip:]):
                return True
        return False
    if not names or (names[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], head) and _matches(parts[1:], names[1:])


def expand_pattern(pattern: str) -> List[str]:
    """The files and folders a glob pattern matches ('**' for any depth of folders), sorted,
    each once, without following a loop of links (see `walk`)."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        found = sorted(glob.glob(pattern))
    else:
        cut = parts.index("**")
        base = os.sep.join(parts[:cut]) or (os.sep if pattern.startswith(os.sep) else os.curdir)
        bases = sorted(glob.glob(base)) if glob.has_magic(base) else [base]
        found = []
        for top in bases:
            if not os.path.isdir(top):
                continue
            for path in _tree(top):
                names = os.path.relpath(path, top).split(os.sep)
                if _matches(parts[cut:], names):
                    found.append(path if base != os.curdir else os.path.relpath(path))
        found.sort()
    unique, seen = [], set()
    for path in found:
        key = identity(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _tree(top: str) -> Iterator[str]:
    """Every file and folder under `top` (not `top` itself), loop-free as `walk`."""
    for dirpath, dirnames, filenames in _loop_free(top):
        for name in dirnames + filenames:
            yield os.path.join(dirpath, name)


def is_video_file(path) -> bool:
    """Whether a file is a video, by its content (`signatures`) when that is recognised, else
    by its extension: an MP4 named .jpg is a video, a JPEG named .mp4 an image."""
    kind = kind_of(str(path))
    if kind in VIDEO_KINDS or kind in IMAGE_KINDS:
        return kind in VIDEO_KINDS
    return is_video_path(path)


def list_files(folder: str, extensions=IMAGE_EXTENSIONS, recursive: bool = True
               ) -> dict[str, str]:
    """{stem: path} for files under `folder` (any depth, as `walk` finds them; only its own
    files with `recursive=False`), sorted by stem; hidden files skipped.

    Two files with one stem (a.jpg and a.png, or a.npy from `prepare --format raw` next to an
    encoded copy): the first in sorted order is kept, and a warning names one such pair.
    """
    found: dict[str, str] = {}
    shadowed: list[tuple[str, str]] = []  # (unused path, the path kept for its stem)
    for path in walk(folder, recursive):
        name = os.path.basename(path)
        if name.startswith(".") or extension(name) not in extensions:
            continue
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
