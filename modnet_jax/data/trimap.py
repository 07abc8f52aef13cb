"""Trimaps from alpha mattes (MODNET_FACTS section 6).

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
"""

from __future__ import annotations

import cv2
import numpy as np

UNKNOWN = 128


def make_trimap(alpha: np.ndarray, radius: int, fg_threshold: float = 0.9,
                bg_threshold: float = 0.0) -> np.ndarray:
    """uint8 trimap (0 / 128 / 255) of the same shape as `alpha` (uint8 0..255).

    radius: band half-width r in pixels (kernel 2r + 1); fg_threshold / bg_threshold are on
    the [0, 1] scale: fg = alpha >= fg_threshold, not_bg = alpha > bg_threshold.
    """
    if alpha.dtype != np.uint8:
        raise ValueError(f"make_trimap expects uint8 alpha, got {alpha.dtype}")
    plane = alpha.reshape(alpha.shape[:2])
    # Thresholds move to the 0..255 integer scale: a >= t  <=>  alpha >= ceil(255 t).
    fg = (plane >= int(np.ceil(fg_threshold * 255 - 1e-6))).astype(np.uint8)
    not_bg = (plane > int(np.floor(bg_threshold * 255 + 1e-6))).astype(np.uint8)
    if radius > 0:
        kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        # Border value 1 for erosion: the image edge does not count as background, so a
        # subject cut by the crop keeps its definite-foreground core up to the edge.
        fg = cv2.erode(fg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
        not_bg = cv2.dilate(not_bg, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    # 128 where not background, then 255 wherever foreground survives (fg wins, as in the
    # recipe, even with thresholds that let the two sets disagree); masks are 0/1.
    trimap = cv2.max(not_bg * np.uint8(UNKNOWN), fg * np.uint8(255))
    return trimap.reshape(alpha.shape)


def band_radius(image_size: int, scale: float) -> int:
    """Band half-width for a kernel of about (image_size / 256) * scale pixels."""
    return max(1, int(round(image_size / 256.0 * scale / 2.0)))


def random_band_radius(rng: np.random.Generator, image_size: int,
                       kernel_range: tuple[float, float]) -> int:
    """The per-sample random band of the recipe: k ~ (size / 256) * U(lo, hi)."""
    low, high = kernel_range
    return band_radius(image_size, rng.uniform(low, high) if high > low else low)
