"""Generated inputs for ``e2e_speed.py``: a moving synthetic portrait clip and a folder of
mixed-size photos. Deterministic from a seed; nothing is downloaded.

* ``write_clip``: one synthetic head-and-shoulders subject (``modnet_jax.data.synthetic``)
  composited over a wider background; the subject sways sideways and the background pans,
  so consecutive frames differ as in a real clip. Written with OpenCV as mp4v.
* ``write_photo_folder``: ``count`` JPEG photos cycling through ``len(PHOTO_SHAPES)``
  aspect ratios, each with its own megapixel count in 2-6 MP, so the release's resize rule
  gives one distinct model input size per aspect ratio (the mix a real photo folder has).
  The subject and background are drawn once per size (at the photo's size) and varied per
  photo by a shift and a flip, which keeps generation cheap.
"""

from __future__ import annotations

import math
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from modnet_jax.data.synthetic import generate_background, generate_portrait

# (width ratio, height ratio, megapixels): 10 aspect ratios -> 10 distinct model sizes
# (512 short side, long side floored to a multiple of 32), 2-6 MP each.
PHOTO_SHAPES: Tuple[Tuple[int, int, float], ...] = (
    (4, 3, 3.1), (3, 4, 5.0), (3, 2, 6.0), (2, 3, 2.2), (16, 9, 2.1),
    (9, 16, 3.7), (1, 1, 4.0), (5, 4, 2.6), (4, 5, 5.5), (16, 10, 4.5),
)


def photo_size(shape: Tuple[int, int, float], scale: float = 1.0) -> Tuple[int, int]:
    """(height, width) of a photo with aspect ``shape[0]:shape[1]`` and ``shape[2]`` MP x scale."""
    rw, rh, mp = shape
    pixels = mp * 1e6 * scale
    unit = math.sqrt(pixels / (rw * rh))
    return max(8, int(round(rh * unit))), max(8, int(round(rw * unit)))


def _composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    return np.clip(fg * a + bg * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def _shift(image: np.ndarray, dx: float, dy: float, border: int) -> np.ndarray:
    h, w = image.shape[:2]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)


def write_clip(path: str, frames: int = 90, width: int = 1280, height: int = 720,
               fps: float = 30.0, seed: int = 0) -> str:
    """A ``frames``-frame ``width`` x ``height`` mp4v clip of a moving synthetic portrait."""
    side = min(height, width)
    person = generate_portrait(seed, 0, side, side)
    pan = max(8, width // 8)
    bg = generate_background(seed, 0, height, width + pan, avoid=person["clothes_colour"])
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), True)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: cannot open an mp4v writer")
    x0 = (width - side) // 2
    try:
        for t in range(frames):
            phase = 2 * math.pi * t / max(frames, 2)
            dx = 0.15 * width * math.sin(phase)
            dy = 0.02 * height * math.sin(3 * phase)
            fg = np.zeros((height, width, 3), np.uint8)
            alpha = np.zeros((height, width), np.uint8)
            fg[:, x0:x0 + side] = person["fg"]
            alpha[:, x0:x0 + side] = person["alpha"]
            fg = _shift(fg, dx, dy, cv2.BORDER_REPLICATE)
            alpha = _shift(alpha, dx, dy, cv2.BORDER_CONSTANT)
            off = int(round(pan / 2 * (1 + math.sin(phase))))
            frame = _composite(fg, alpha, bg[:, off:off + width])
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def write_photo_folder(folder: str, count: int = 20, scale: float = 1.0, seed: int = 0,
                       shapes: Sequence[Tuple[int, int, float]] = PHOTO_SHAPES,
                       quality: int = 90, matte_folder: Optional[str] = None) -> List[str]:
    """``count`` JPEG photos in ``folder`` (sizes cycle through ``shapes``); their paths.

    ``scale`` multiplies every photo's pixel count (e.g. 0.01 for a smoke run). With
    ``matte_folder``, each photo's ground-truth matte is written there as an 8-bit PNG of the
    same stem (the PPM-100 layout when the folders are ``ROOT/image`` and ``ROOT/matte``).
    """
    os.makedirs(folder, exist_ok=True)
    drawn = {}
    paths = []
    for i in range(count):
        k = i % len(shapes)
        h, w = photo_size(shapes[k], scale)
        if k not in drawn:
            person = generate_portrait(seed, k, h, w)
            bg = generate_background(seed, k, h, w, avoid=person["clothes_colour"])
            drawn[k] = (person["fg"], person["alpha"], bg)
        fg, alpha, bg = drawn[k]
        rng = np.random.default_rng([seed, i])
        dx, dy = rng.uniform(-0.1, 0.1) * w, rng.uniform(0, 0.08) * h
        shifted = _shift(alpha, dx, dy, cv2.BORDER_CONSTANT)
        photo = _composite(_shift(fg, dx, dy, cv2.BORDER_REPLICATE), shifted, bg)
        if i // len(shapes) % 2:
            photo, shifted = photo[:, ::-1], shifted[:, ::-1]
        path = os.path.join(folder, f"photo_{i:03d}_{w}x{h}.jpg")
        if matte_folder:
            os.makedirs(matte_folder, exist_ok=True)
            if not cv2.imwrite(os.path.join(matte_folder, f"photo_{i:03d}_{w}x{h}.png"),
                               np.ascontiguousarray(shifted)):
                raise RuntimeError(f"{matte_folder}: cannot write mattes")
        ok = cv2.imwrite(path, cv2.cvtColor(photo, cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"{path}: cannot write")
        paths.append(path)
    return paths
