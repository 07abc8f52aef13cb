"""What ``predict`` reads and where its results go: files, folders (optionally recursive) and
glob patterns in; output paths that mirror the input folders out.

* A file is an image or a video by its content (by its extension when the content is not
  recognised; other extensions are tried as images). Folders and patterns never follow a
  loop of links and list each file once (`imaging.files.walk`, `expand_pattern`).
* A folder is read for image and video files. Without ``recursive`` its sub-folders are not
  entered but reported (``Inputs.skipped_dirs``); with it, every level is read and the
  results mirror the folder structure: ``photos/2024/a.jpg`` -> ``OUT/2024/a_matte.png``.
* A pattern (``'photos/*.jpg'``, ``'clips/**/*.mp4'``, quoted so the shell left it alone) is
  expanded here; one that matches nothing is reported like a missing file.
* Two inputs that would write the same output name (``x.jpg`` and ``x.png`` in one folder,
  or ``a/x.jpg`` and ``b/x.jpg`` given as two arguments) get ``x``, ``x_2``, ... in the order
  of their paths, so the names do not depend on the order of the arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from modnet_jax.imaging import files
from modnet_jax.inference.images import is_image_path
from modnet_jax.inference.video import is_video_path

_GLOB_CHARS = "*?["


@dataclass
class Inputs:
    """images/videos: (path, output stem relative to the output folder, without extension)."""

    images: List[Tuple[str, str]] = field(default_factory=list)
    videos: List[Tuple[str, str]] = field(default_factory=list)
    errors: List[Tuple[str, str]] = field(default_factory=list)  # (path, message)
    skipped_dirs: List[str] = field(default_factory=list)  # sub-folders not entered

    @property
    def total(self) -> int:
        return len(self.images) + len(self.videos) + len(self.errors)


def _media(path: str) -> bool:
    return is_image_path(path) or is_video_path(path)


def _folder(root: str, recursive: bool, out: List[Tuple[str, str]], skipped: List[str]):
    for full in files.walk(root, recursive, skipped):  # loop-free, each file once
        if _media(full):
            out.append((full, os.path.splitext(os.path.relpath(full, root))[0]))


def collect_inputs(paths: List[str], recursive: bool = False) -> Inputs:
    found: List[Tuple[str, str]] = []
    result = Inputs()
    for path in paths:
        if not os.path.exists(path) and any(c in path for c in _GLOB_CHARS):
            matches = files.expand_pattern(path)  # loop-free, each file once
            if not matches:
                result.errors.append((path, f"{path}: no file or folder matches this pattern"))
            for match in matches:
                if os.path.isdir(match):
                    _folder(match, recursive, found, result.skipped_dirs)
                elif _media(match):
                    found.append((match, os.path.splitext(os.path.basename(match))[0]))
        elif os.path.isdir(path):
            _folder(path, recursive, found, result.skipped_dirs)
        elif not os.path.exists(path):
            result.errors.append((path, f"{path}: no such file or folder"))
        else:
            found.append((path, os.path.splitext(os.path.basename(path))[0]))
    seen = set()
    for path, stem in _unique_stems(found):
        key = files.identity(path)
        if key in seen:  # the same file through two arguments (or links): once
            continue
        seen.add(key)
        (result.videos if files.is_video_file(path) else result.images).append((path, stem))
    return result


def _unique_stems(found: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """Same order as ``found``; a stem shared by several distinct files gets _2, _3, ... in
    the order of their paths."""
    by_stem: Dict[str, List[str]] = {}
    for path, stem in found:
        files = by_stem.setdefault(stem, [])
        if os.path.abspath(path) not in files:
            files.append(os.path.abspath(path))
    taken = set(by_stem)
    renamed: Dict[Tuple[str, str], str] = {}
    for stem, files in by_stem.items():
        for n, file in enumerate(sorted(files)[1:], 2):
            while f"{stem}_{n}" in taken:
                n += 1
            taken.add(f"{stem}_{n}")
            renamed[(stem, file)] = f"{stem}_{n}"
    return [(path, renamed.get((stem, os.path.abspath(path)), stem)) for path, stem in found]


def output_path(directory: str, stem: str, kind: str, ext: str) -> str:
    """``DIR/<stem>_<kind><ext>`` (``stem`` may hold sub-folders)."""
    return os.path.join(directory, f"{stem}_{kind}{ext}")
