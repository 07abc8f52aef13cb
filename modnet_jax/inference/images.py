"""Image files and compositing for inference: read / write with clear errors, cut-outs, colours.

Arrays here are RGB (OpenCV's BGR stays inside ``read_image`` / ``write_image``); mattes are
float [H, W] in [0, 1].
"""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

NAMED_COLOURS = {
    "green": (0, 255, 0), "blue": (0, 0, 255), "red": (255, 0, 0), "white": (255, 255, 255),
    "black": (0, 0, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
}


class InputError(Exception):
    """A user-facing problem with one file (unreadable, unwritable, empty...): one-line message."""


def is_image_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTS


def _imread(path: str, flags: int, what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    data = cv2.imread(path, flags)
    if data is None or data.size == 0:
        raise InputError(f"{path}: cannot read {what} (not an image, corrupt or unsupported)")
    return data


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(height, width) from the file's header without decoding it, or None if unknown."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # noqa: BLE001 - not readable by Pillow: read_image will say why
        return None


def read_image(path: str) -> np.ndarray:
    """[H, W, 3] uint8 RGB (gray is repeated, alpha dropped). Raises ``InputError``."""
    return cv2.cvtColor(_imread(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_matte(path: str) -> np.ndarray:
    """[H, W] float64 alpha in [0, 1] from an 8- or 16-bit gray (or colour: first channel) file."""
    m = _imread(path, cv2.IMREAD_UNCHANGED, "matte")
    if m.ndim == 3:
        m = m[:, :, 0]
    scale = 65535.0 if m.dtype == np.uint16 else 255.0
    return m.astype(np.float64) / scale


def write_image(path: str, image: np.ndarray) -> None:
    """Write RGB [H, W, 3], RGBA [H, W, 4] or gray [H, W] uint8. Raises ``InputError``."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    try:
        ok = cv2.imwrite(path, image)
    except cv2.error as exc:
        raise InputError(f"{path}: cannot write ({str(exc).strip().splitlines()[-1]})") from None
    if not ok:
        raise InputError(f"{path}: cannot write (folder missing or not writable?)")


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


Background = Union[Tuple[int, int, int], np.ndarray]


def background_for(background: Background, height: int, width: int) -> np.ndarray:
    """[H, W, 3] float32 background: a flat colour, or an RGB image resized to fit."""
    if isinstance(background, np.ndarray):
        if background.shape[:2] != (height, width):
            background = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
        return background.astype(np.float32)
    return np.broadcast_to(np.asarray(background, np.float32), (height, width, 3))


def composite(image: np.ndarray, matte: np.ndarray, background: Background) -> np.ndarray:
    """image * alpha + background * (1 - alpha), uint8 RGB [H, W, 3]."""
    h, w = image.shape[:2]
    a = np.asarray(matte, np.float32)[:, :, None]
    bg = background_for(background, h, w)
    out = image[:, :, :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
