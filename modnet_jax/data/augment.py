"""Geometric and photometric augmentation on uint8 numpy images.

Crops are square windows chosen in source coordinates and resized once to the training size,
so a 1080p input costs one resize of the crop, never a resize of the full frame. The random
window is biased to keep the subject: with probability `subject_bias` it is centred on a
random point of the subject (mean alpha >= 1/2 around it; any alpha > 0 for a faint or tiny
subject), otherwise anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Window:
    """A square crop: rows y0:y0+side, columns x0:x0+side of the source image."""

    y0: int
    x0: int
    side: int


# Random points tried for a subject-centred crop before falling back to a grid search.
_SUBJECT_TRIES = 32


def _clamp(start: float, side: int, limit: int) -> int:
    return int(min(max(0, round(start)), max(0, limit - side)))


def random_window(height: int, width: int, rng: np.random.Generator,
                  scale_range: tuple[float, float], alpha: np.ndarray | None = None,
                  subject_bias: float = 0.0) -> Window:
    """A square window of side min(H, W) / s, s ~ U(scale_range), placed at random.

    s >= 1 zooms in (the crop is smaller than the short side); the window never leaves the
    image, so the output never has padding.
    """
    low, high = scale_range
    zoom = rng.uniform(low, high) if high > low else low
    side = max(1, min(height, width, int(round(min(height, width) / max(zoom, 1.0)))))
    cy = rng.uniform(0, height)
    cx = rng.uniform(0, width)
    if alpha is not None and rng.random() < subject_bias:
        # The first of a fixed number of random points whose neighbourhood (a box of 1/64 of
        # the short side) is mostly subject: mean alpha >= 1/2. Points and box are relative
        # to the image size and a box mean hardly changes when the image is resized (a thin
        # strand of hair can, a box mean cannot), so a sample picks the same place whatever
        # size its image was decoded at (reduced decoding, a resized copy of the dataset).
        points = rng.random((_SUBJECT_TRIES, 2)) * (height, width)
        half = min(height, width) / 128
        hit = None
        for cy_try, cx_try in points:
            y0, x0 = max(0, int(round(cy_try - half))), max(0, int(round(cx_try - half)))
            y1 = max(y0 + 1, int(round(cy_try + half)))
            x1 = max(x0 + 1, int(round(cx_try + half)))
            if alpha[y0:y1, x0:x1].mean() >= 127.5:
                hit = cy_try, cx_try
                break
        if hit is not None:
            cy, cx = hit
        else:
            # A small or faint subject: a random cell of a coarse grid over its pixels (alpha
            # > 0; about 64 cells on the short side keeps the lookup cheap at 1080p).
            step = max(1, min(height, width) // 64)
            ys, xs = np.nonzero(alpha[::step, ::step])
            if ys.size:
                pick = int(rng.integers(ys.size))
                cy, cx = (ys[pick] + 0.5) * step, (xs[pick] + 0.5) * step
    return Window(_clamp(cy - side / 2, side, height), _clamp(cx - side / 2, side, width), side)


def centre_window(height: int, width: int) -> Window:
    """The largest centred square (evaluation: resize short side, centre crop)."""
    side = min(height, width)
    return Window((height - side) // 2, (width - side) // 2, side)


def crop_resize(image: np.ndarray, window: Window, size: int) -> np.ndarray:
    """Crops `window` and resizes it to size x size (area filter when shrinking)."""
    crop = image[window.y0:window.y0 + window.side, window.x0:window.x0 + window.side]
    if window.side == size:
        return np.ascontiguousarray(crop)
    # Area averaging when shrinking keeps thin hair from aliasing; linear when enlarging.
    interp = cv2.INTER_AREA if window.side > size else cv2.INTER_LINEAR
    out = cv2.resize(crop, (size, size), interpolation=interp)
    return out.reshape((size, size) + image.shape[2:])


def split_colour_alpha(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[H, W, 4] colour + alpha -> contiguous ([H, W, 3], [H, W]) copies."""
    return cv2.cvtColor(packed, cv2.COLOR_RGBA2RGB), cv2.extractChannel(packed, 3)


def hflip(image: np.ndarray) -> np.ndarray:
    # cv2.flip: several times faster than copying a reversed numpy view; same pixels.
    return cv2.flip(image, 1).reshape(image.shape)


@dataclass(frozen=True)
class JitterRanges:
    """Colour jitter ranges: hue shift in degrees (+-), saturation and value factors."""

    hue_degrees: float = 10.0
    saturation: tuple[float, float] = (0.7, 1.3)
    value: tuple[float, float] = (0.7, 1.3)


@dataclass(frozen=True)
class Jitter:
    """Colour jitter of one sample: hue shift in OpenCV hue steps (2 degrees; 0..179 wraps),
    saturation and value factors (applied per level through a lookup table, rounded)."""

    hue_steps: int
    saturation: float
    value: float


def draw_jitter(rng: np.random.Generator, ranges: JitterRanges) -> Jitter:
    hue = int(round(rng.uniform(-ranges.hue_degrees, ranges.hue_degrees) / 2))  # cv2 hue: 0..179
    return Jitter(hue, float(rng.uniform(*ranges.saturation)), float(rng.uniform(*ranges.value)))


def apply_jitter(image: np.ndarray, jitter: Jitter) -> np.ndarray:
    """Hue shift and saturation/brightness scaling, via one 3-channel HSV lookup table."""
    levels = np.arange(256, dtype=np.float32)
    table = np.empty((256, 1, 3), np.uint8)
    table[:, 0, 0] = (np.arange(256) + jitter.hue_steps) % 180
    table[:, 0, 1] = np.clip(np.rint(levels * jitter.saturation), 0, 255)
    table[:, 0, 2] = np.clip(np.rint(levels * jitter.value), 0, 255)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return cv2.cvtColor(cv2.LUT(hsv, table), cv2.COLOR_HSV2RGB)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, ranges: JitterRanges) -> np.ndarray:
    """A random hue shift and saturation/brightness scaling (draw_jitter + apply_jitter)."""
    return apply_jitter(image, draw_jitter(rng, ranges))
