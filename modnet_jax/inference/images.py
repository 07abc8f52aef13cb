"""Image files for inference: read / write with clear errors, cut-outs, colours.

Reading, extensions and compositing are the shared ones of `modnet_jax.imaging` (the same
files and formats as training data and evaluation); this module gives them the inference
conventions: arrays are RGB (OpenCV's BGR stays inside the readers and ``write_image``),
mattes float [H, W] in [0, 1], and every problem with a file is an ``InputError`` whose
message starts with the path. The names re-exported here (``IMAGE_EXTS``, ``composite``,
``background_for``, ``Background``) are the shared objects, kept under their old names.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Tuple

import cv2
import numpy as np

from modnet_jax.imaging import decode, output
from modnet_jax.imaging.compositing import Background, background_for
from modnet_jax.imaging.compositing import composite_over as composite
from modnet_jax.imaging.files import IMAGE_EXTENSIONS as IMAGE_EXTS
from modnet_jax.imaging.decode import file_orientation, orient
from modnet_jax.imaging.files import InputError, UnusableFile, is_image_path

__all__ = ["IMAGE_EXTS", "NAMED_COLOURS", "Background", "InputError", "background_for",
           "composite", "cutout", "image_size", "is_image_path", "matte_to_uint8", "orientation_of",
           "parse_colour", "read_image", "read_matte", "upright_size", "write_image"]

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


def upright_size(path: str) -> Optional[Tuple[int, int]]:
    """(height, width) of the image ``read_image`` will return (header and EXIF orientation
    only, no decoding), or None if unknown."""
    size = image_size(path)
    return None if size is None else decode.upright_hw(*size, orientation_of(path))


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
