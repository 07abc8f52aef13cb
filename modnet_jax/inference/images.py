"""Image files for inference: what ``predict`` reads, read / write with clear errors, cut-outs,
colours, clean foreground colours.

Reading, extensions and compositing are the shared ones of ``modnet_jax.imaging`` (the same
files and formats as training data and evaluation); this module gives them the inference
conventions: arrays are RGB (OpenCV's BGR stays inside the readers and ``write_image``),
mattes float [H, W] in [0, 1], and every problem with a file is an ``InputError`` whose
message starts with the path.

Inputs (``collect_inputs``): a file is an image or a video by its content (by its extension
when the content is not recognised; others are tried as images); a folder is read for image
and video files, its sub-folders only with ``recursive`` (else reported in
``Inputs.skipped_dirs``), the outputs then mirroring the folder structure (``photos/2024/a.jpg``
-> ``OUT/2024/a_matte.png``); a quoted pattern (``'photos/*.jpg'``, ``'clips/**/*.mp4'``) is
expanded here, and one that matches nothing is reported like a missing file. Folders and
patterns never follow a loop of links and list each file once (``imaging.files.walk``,
``expand_pattern``). Two inputs that would write the same output name get ``x``, ``x_2``, ...
in the order of their paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

from modnet_jax.imaging import decode, files, output
from modnet_jax.imaging.compositing import (Background, background_for, composite_over,
                                            estimate_foreground_ml)
from modnet_jax.imaging.decode import file_orientation, orient
from modnet_jax.imaging.files import InputError, UnusableFile, is_image_path, is_video_path

composite = composite_over

NAMED_COLOURS = {
    "green": (0, 255, 0), "blue": (0, 0, 255), "red": (255, 0, 0), "white": (255, 255, 255),
    "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
}


def _read(path: str, decoder: Callable[[str], np.ndarray]) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    return decoder(path)  # UnusableFile is an InputError: "path: reason"


def orientation_of(path: str) -> int:
    """The EXIF orientation of an image file (1 when it has none or cannot be read)."""
    try:
        return file_orientation(path)
    except UnusableFile:
        return 1


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(height, width) from the file's header without decoding it, or None if unknown."""
    return decode.image_size(path)


def read_image(path: str) -> np.ndarray:
    """[H, W, 3] uint8 RGB (grey is repeated, alpha dropped), upright: a JPEG's EXIF
    orientation is applied (the training data's rule). Raises ``InputError``."""
    return _read(path, decode.decode_rgb)


def read_matte(path: str, orientation: int = 1, keep_uint8: bool = False) -> np.ndarray:
    """[H, W] float64 alpha in [0, 1] at the file's precision (8/16-bit), with the shared matte
    policy (grey, RGBA's alpha channel, equal colour channels), turned by ``orientation``:
    the EXIF orientation of its image (``orientation_of``), since a matte is in its image's
    stored pixel order. Raises ``InputError``.

    ``keep_uint8``: an 8-bit file comes back as its uint8 values (0..255) instead.
    """
    matte = _read(path, lambda p: decode.decode_alpha_native(p, keep_uint8))
    return np.ascontiguousarray(orient(matte, orientation))


def write_image(path: str, image: np.ndarray) -> None:
    """Write RGB [H, W, 3], RGBA [H, W, 4] or gray [H, W] uint8. Raises ``InputError``."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    output.write_image(path, image)  # whole or not at all; the OS's reason on failure


def matte_to_uint8(matte: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(matte, np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB from gray [H, W] / [H, W, 1], RGB or RGBA (alpha dropped)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image


def cutout(image: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """RGBA [H, W, 4] uint8: the image's colours with the matte as (straight) alpha."""
    return np.concatenate([image[:, :, :3], matte_to_uint8(matte)[:, :, None]], axis=2)


def parse_colour(text: str) -> Tuple[int, int, int]:
    """RGB from "green", "#00ff00", "00ff00" or "0,255,0". Raises ``ValueError``."""
    t = text.strip().lower()
    if t in NAMED_COLOURS:
        return NAMED_COLOURS[t]
    if "," in t:
        parts = [int(p) for p in t.split(",")]
        if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
            return tuple(parts)
    else:
        h = t[1:] if t.startswith("#") else t
        if len(h) == 6 and all(c in "0123456789abcdef" for c in h):
            return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))
    raise ValueError(f"not a colour: {text!r} (use a name, #rrggbb or r,g,b)")


def clean_outputs(result, background: Optional[Background] = None, cutout: bool = False):
    """A copy of an engine result (with ``image``) whose cut-out / composite use the true
    foreground colours F, estimated in the matte's soft band with pymatting's multi-level
    foreground estimation (``imaging.compositing.estimate_foreground_ml``), so that hair
    does not carry the old background onto the new one. On the host; an opt-in
    (``predict --clean-colours``).

    ``background`` (a colour or an RGB image) gives a composite, ``cutout`` an RGBA cut-out
    (``F`` as colour, the matte as alpha).
    """
    if result.image is None:
        raise ValueError("clean_outputs needs the frame: ask the engine for with_image=True")
    fg = estimate_foreground_ml(result.image, result.matte)
    changes = {}
    if cutout:
        rgb = np.clip(np.rint(fg), 0, 255).astype(np.uint8)
        changes["cutout"] = np.concatenate([rgb, matte_to_uint8(result.matte)[..., None]], -1)
    if background is not None:
        changes["composite"] = composite_over(fg, result.matte, background)
    return replace(result, **changes)


def first_use_note() -> Optional[str]:
    """A line to print before the first ``--clean-colours`` run on this machine: pymatting's
    numba kernels compile on first use (a minute of silence otherwise; numba caches them
    beside pymatting, so later runs skip it). None when that cache is already there."""
    import glob
    import importlib.util

    spec = importlib.util.find_spec("pymatting")
    if spec is not None and spec.submodule_search_locations:
        root = list(spec.submodule_search_locations)[0]
        if glob.glob(os.path.join(root, "foreground", "__pycache__", "*.nbi")):
            return None
    return ("--clean-colours: compiling pymatting's foreground kernels first (once per "
            "installation; this can take a minute)")


# ---------------------------------------------------------------- inputs

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
        paths = by_stem.setdefault(stem, [])
        if os.path.abspath(path) not in paths:
            paths.append(os.path.abspath(path))
    taken = set(by_stem)
    renamed: Dict[Tuple[str, str], str] = {}
    for stem, paths in by_stem.items():
        for n, file in enumerate(sorted(paths)[1:], 2):
            while f"{stem}_{n}" in taken:
                n += 1
            taken.add(f"{stem}_{n}")
            renamed[(stem, file)] = f"{stem}_{n}"
    return [(path, renamed.get((stem, os.path.abspath(path)), stem)) for path, stem in found]


def output_path(directory: str, stem: str, kind: str, ext: str) -> str:
    """``DIR/<stem>_<kind><ext>`` (``stem`` may hold sub-folders)."""
    return os.path.join(directory, f"{stem}_{kind}{ext}")
