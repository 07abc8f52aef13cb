"""The compositing law, and a foreground estimate for re-compositing image + matte data.

`composite` applies image = fg * a + bg * (1 - a) to uint8 training data; `composite_over`
(float matte, flat colour or image background) is the same law for inference outputs. On uint8
inputs it returns the correctly rounded result of the formula with a = alpha / 255, so
a = 255 returns fg and a = 0 returns bg bit for bit (255 is odd, so the exact value is never
half-way between two integers: it is at least 1/510 away from a rounding boundary).

It runs as one OpenCV pass, `cv2.blendLinear(fg, bg, a, 255 - a)`, with the integer weights
held exactly in float32: OpenCV computes (fg * w1 + bg * w2) / (w1 + w2 + 1e-5) and rounds.
The products and their sum (<= 255 * 255 < 2^24) are exact in float32, and the division
(by 255 + 1e-5 and its float32 rounding) moves the quotient by less than 1e-4, far below
the 1/510 margin, so the result equals the exact integer formula (tests/
test_imaging_compositing.py checks all 2^24 (fg, bg, alpha) triples against it).
"""

from __future__ import annotations

from typing import Tuple, Union

import cv2
import numpy as np

# A background: a flat RGB colour, or an RGB image (resized to the picture's size).
Background = Union[Tuple[int, int, int], np.ndarray]


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round(fg * a + bg * (1 - a)) with a = alpha / 255; uint8 [H, W, 3] out.

    fg, bg: uint8 [H, W, 3]; alpha: uint8 [H, W] or [H, W, 1].
    """
    if fg.shape != bg.shape or fg.dtype != np.uint8 or bg.dtype != np.uint8:
        raise ValueError(f"composite: fg {fg.shape} {fg.dtype} and bg {bg.shape} {bg.dtype} "
                         "must be uint8 of one shape")
    weight = alpha.reshape(fg.shape[:2]).astype(np.float32)
    return cv2.blendLinear(fg, bg, weight, 255.0 - weight)


def background_for(background: Background, height: int, width: int) -> np.ndarray:
    """[H, W, 3] float32 background: a flat colour, or an RGB image resized (area) to fit."""
    if isinstance(background, np.ndarray):
        if background.shape[:2] != (height, width):
            background = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
        return background.astype(np.float32)
    return np.broadcast_to(np.asarray(background, np.float32), (height, width, 3))


def composite_over(image: np.ndarray, matte: np.ndarray, background: Background) -> np.ndarray:
    """round(image * a + background * (1 - a)), uint8 RGB [H, W, 3], for a float matte
    a [H, W] in [0, 1] (a predicted one) over a colour or an image."""
    h, w = image.shape[:2]
    a = np.asarray(matte, np.float32)[:, :, None]
    bg = background_for(background, h, w)
    out = image[:, :, :3].astype(np.float32) * a + bg * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray, radius: int = 0,
                        passes: int = 3) -> np.ndarray:
    """Foreground colours for an image whose matte is known, uint8 RGB out.

    Needed to re-composite image + matte datasets: using the photo itself as fg would carry
    its old background into the semi-transparent band. Each pass takes smooth foreground
    and background colours as alpha-weighted local means (box filters of `radius`, default
    1/16 of the short side), then gives the part of the observed colour that the smooth
    model does not explain back to fg and bg in proportion to a and 1 - a (so the composite
    law holds before clipping); the next pass averages those estimates instead of the photo.

    The smooth means are low-frequency, so the passes run at 1/4 resolution; at full
    resolution only the final correction is applied, and only in the soft band. Opaque
    pixels are the photo; transparent ones get the smooth fg colour, a plausible extension
    of the subject for losses that re-composite with a predicted matte.

    Compared with pymatting's `estimate_foreground_ml` (benchmarks/foreground.py, results
    in benchmarks/RESULTS.md): at 512x512 its re-composite error is ~30% lower (0.58 vs 0.81
    levels; the photo itself gives 1.78) but it takes ~8x longer (202 vs 26 ms per image,
    one thread, loaded machine). This runs on every re-composited training crop, where
    200 ms per sample would dominate the pipeline, so the pipeline uses this estimate.
    """
    height, width = image.shape[:2]
    radius = radius or max(2, min(height, width) // 16)
    scale = max(1, min(4, min(height, width) // 32))
    small = (max(1, width // scale), max(1, height // scale))
    box = (2 * max(1, radius // scale) + 1,) * 2
    a_full = alpha.reshape(height, width)
    a = cv2.resize(a_full, small, interpolation=cv2.INTER_AREA).astype(np.float32)[:, :, None] / 255
    img = cv2.resize(image, small, interpolation=cv2.INTER_AREA).astype(np.float32)
    weight_fg = cv2.blur(a, box)[:, :, None] + 1e-4
    weight_bg = cv2.blur(1.0 - a, box)[:, :, None] + 1e-4
    fg, bg = img, img
    for step in range(passes):
        fg_mean = cv2.blur(fg * a, box) / weight_fg
        bg_mean = cv2.blur(bg * (1.0 - a), box) / weight_bg
        if step + 1 < passes:
            residual = img - a * fg_mean - (1.0 - a) * bg_mean
            fg = np.clip(fg_mean + a * residual, 0, 255)
            bg = np.clip(bg_mean + (1.0 - a) * residual, 0, 255)
    fg_mean = cv2.resize(fg_mean, (width, height), interpolation=cv2.INTER_LINEAR)
    bg_mean = cv2.resize(bg_mean, (width, height), interpolation=cv2.INTER_LINEAR)
    # fg_mean is a weighted mean of values in [0, 255]: a saturating round is all it needs.
    out = cv2.convertScaleAbs(fg_mean)
    cv2.copyTo(image, (a_full == 255).astype(np.uint8), out)  # boolean indexing is far slower
    band = np.flatnonzero((a_full > 0) & (a_full < 255))
    a_band = a_full.reshape(-1)[band].astype(np.float32)[:, None] / 255
    photo = image.reshape(-1, 3)[band]
    smooth_fg = fg_mean.reshape(-1, 3)[band]
    residual = photo - a_band * smooth_fg - (1.0 - a_band) * bg_mean.reshape(-1, 3)[band]
    out.reshape(-1, 3)[band] = np.clip(np.rint(smooth_fg + a_band * residual), 0, 255)
    return out


def estimate_foreground_ml(image: np.ndarray, matte: np.ndarray) -> np.ndarray:
    """Foreground colours [H, W, 3] float32 in [0, 255] by pymatting's multi-level estimate
    (`estimate_foreground_ml`, Germer et al. 2020): an RGB uint8 image and its float matte.

    More accurate than `estimate_foreground` (~30% lower re-composite error) and ~8x slower
    (benchmarks/RESULTS.md): for opt-in, one-off uses such as `predict --clean-colours`, not
    per training sample. Needs pymatting (`pip install -e ".[bench]"`); numba compiles its
    kernels on the first call.
    """
    from pymatting import estimate_foreground_ml as pymatting_estimate

    fg = pymatting_estimate(np.asarray(image[..., :3], np.float32) / 255.0,
                            np.asarray(matte, np.float32))
    return np.clip(np.asarray(fg, np.float32) * 255.0, 0.0, 255.0)
