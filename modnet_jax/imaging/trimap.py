"""Trimaps from alpha mattes, for training losses and for scoring evaluation in the unknown band
(docs/data.md, "Trimaps").

The recipe: fg = alpha >= fg_threshold, not_bg = alpha > bg_threshold; the unknown band is
where dilate(not_bg, k) and erode(fg, k) differ. So a pixel is
    255 (foreground) if it survives erode(fg, k),
    0   (background) if it lies outside dilate(not_bg, k),
    128 (unknown)    otherwise.
Values are exactly {0, 128, 255}; the device maps 128 to 0.5 (a 0..255 trimap handed to the
loss unmapped would silently zero the detail loss, so this contract matters).

The structuring element is a k x k square with k = 2r + 1 odd, so the band reaches r pixels
(chessboard distance) either side of the fg / not-bg boundaries. A square is used rather
than a disc because OpenCV erodes with rectangles in separable passes: at 512x512 with
r = 20 it is about 25x faster than an elliptical kernel, and the trimap is only a loss mask.

One foreground threshold, `FG_THRESHOLD` = 0.9, for training and evaluation alike: it is the
value in the trimap recipe the MODNet authors published for training (fg = matte >= 0.9;
docs/data.md). Evaluation used alpha == 1 before; the two differ only where
a matte holds values in [0.9, 1) farther than r pixels from any value below 0.9 (e.g. the
near-opaque interior of a JPEG-compressed matte): those pixels are now definite foreground
in both places instead of unknown in one. `fg_threshold` remains a parameter for datasets
with other conventions.
"""

from __future__ import annotations

import cv2
import numpy as np

UNKNOWN = 128
FG_THRESHOLD = 0.9   # fg = alpha >= this (the authors' recipe; see the module docstring)
BG_THRESHOLD = 0.0   # not_bg = alpha > this


def _threshold(alpha: np.ndarray, fg_threshold: float, bg_threshold: float) -> tuple:
    """(fg, not_bg) 0/1 uint8 masks: alpha >= fg_threshold, alpha > bg_threshold (thresholds
    on the [0, 1] scale; a uint8 matte is compared on its 0..255 integer scale, exactly)."""
    plane = alpha.reshape(alpha.shape[:2])
    if plane.dtype == np.uint8:
        # a >= t  <=>  alpha >= ceil(255 t);  a > t  <=>  alpha > floor(255 t).
        fg = plane >= int(np.ceil(fg_threshold * 255 - 1e-6))
        not_bg = plane > int(np.floor(bg_threshold * 255 + 1e-6))
    else:
        fg, not_bg = plane >= fg_threshold, plane > bg_threshold
    return fg.astype(np.uint8), not_bg.astype(np.uint8)


def band_masks(alpha: np.ndarray, radius: int, fg_threshold: float = FG_THRESHOLD,
               bg_threshold: float = BG_THRESHOLD) -> tuple:
    """(definite foreground, not definite background) 0/1 uint8 masks [H, W] of the trimap
    of `alpha` (uint8 0..255 or float [0, 1]): erode(fg) and dilate(not_bg) by a
    (2 radius + 1) square. The unknown band is where not_bg is 1 and fg is 0."""
    fg, not_bg = _threshold(np.asarray(alpha), fg_threshold, bg_threshold)
    if radius > 0:
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        # Border value 1 for erosion: the image edge does not count as background, so a
        # subject cut by the crop keeps its definite-foreground core up to the edge.
        fg = cv2.erode(fg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
        not_bg = cv2.dilate(not_bg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return fg, not_bg


def make_trimap(alpha: np.ndarray, radius: int, fg_threshold: float = FG_THRESHOLD,
                bg_threshold: float = BG_THRESHOLD) -> np.ndarray:
    """uint8 trimap (0 / 128 / 255) of the same shape as `alpha` (uint8 0..255).

    radius: band half-width r in pixels (kernel 2r + 1); fg_threshold / bg_threshold are on
    the [0, 1] scale: fg = alpha >= fg_threshold, not_bg = alpha > bg_threshold.
    """
    if alpha.dtype != np.uint8:
        raise ValueError(f"make_trimap expects uint8 alpha, got {alpha.dtype}")
    fg, not_bg = band_masks(alpha, radius, fg_threshold, bg_threshold)
    # 128 where not background, then 255 wherever foreground survives (fg wins, as in the
    # recipe, even with thresholds that let the two sets disagree); masks are 0/1.
    return cv2.max(not_bg * np.uint8(UNKNOWN), fg * np.uint8(255)).reshape(alpha.shape)


def trimap_from_float(alpha: np.ndarray, radius: int, fg_threshold: float = FG_THRESHOLD,
                      bg_threshold: float = BG_THRESHOLD) -> np.ndarray:
    """The trimap of a matte as float {0, 0.5, 1} [H, W]; `alpha` float [0, 1] (a 16-bit
    ground truth keeps its precision against the thresholds) or uint8 0..255."""
    fg, not_bg = band_masks(alpha, int(radius), fg_threshold, bg_threshold)
    return np.where(fg > 0, 1.0, np.where(not_bg > 0, 0.5, 0.0))


def band_radius(image_size: int, scale: float) -> int:
    """Band half-width for a kernel of about (image_size / 256) * scale pixels."""
    return max(1, int(round(image_size / 256.0 * scale / 2.0)))


def random_band_radius(rng: np.random.Generator, image_size: int,
                       kernel_range: tuple[float, float]) -> int:
    """The per-sample random band of the recipe: k ~ (size / 256) * U(lo, hi)."""
    low, high = kernel_range
    return band_radius(image_size, rng.uniform(low, high) if high > low else low)
