"""Alpha-matte error metrics (matting convention), as pure numpy/scipy functions.

Every function takes a predicted matte ``pred`` and a ground truth ``gt`` of the same spatial
shape ``[H, W]`` (a trailing channel axis of size 1 is dropped). Float arrays are read as alpha
in [0, 1]; ``uint8`` arrays as 0..255 and divided by 255. An optional boolean ``mask`` [H, W]
restricts the *sum / average* to some pixels (usually the trimap's unknown band, see
``unknown_mask``); filtering and connected components are always computed on the whole image.

Units:

* ``mse``  mean((a - g)^2) over the mask, alpha in [0, 1]             (unitless)
* ``mad``  mean|a - g| over the mask                                  (unitless)
* ``sad``  sum|a - g| over the mask / 1000                            (thousands of pixels)
* ``gradient_error``  sum((|grad a| - |grad g|)^2) over the mask / 1000, gradients in alpha per
  pixel (see ``gaussian_gradient_magnitude`` for the exact filters)
* ``connectivity_error``  sum|phi(a) - phi(g)| over the mask / 1000

An empty mask gives ``nan`` for the two means and ``0.0`` for the three sums.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

from modnet_jax.imaging import trimap

METRIC_NAMES = ("mse", "mad", "sad", "grad", "conn")
GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_CUTOFF = 0.15

# 8-connectivity structuring element for scipy.ndimage.label.
_EIGHT = np.ones((3, 3), dtype=bool)


def as_alpha(x) -> np.ndarray:
    """Float64 alpha [H, W] in [0, 1] from a float [0, 1] or uint8 [0, 255] array ([H, W(, 1)])."""
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"an alpha matte must be [H, W] or [H, W, 1], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return a.astype(np.float64)


def _pair(pred, gt, mask) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, g = as_alpha(pred), as_alpha(gt)
    if a.shape != g.shape:
        raise ValueError(f"pred shape {a.shape} != gt shape {g.shape}")
    if mask is None:
        m = np.ones(a.shape, dtype=bool)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.ndim == 3 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.shape != a.shape:
            raise ValueError(f"mask shape {m.shape} != matte shape {a.shape}")
    return a, g, m


def unknown_mask(trimap) -> np.ndarray:
    """Boolean [H, W]: True where the trimap is neither definite background nor foreground.

    ``trimap`` is float in [0, 1] (unknown = 0.5) or uint8 (unknown = 128); any value strictly
    between the two ends counts as unknown.
    """
    t = as_alpha(trimap)
    return (t > 0.0) & (t < 1.0)


def trimap_from_alpha(gt, radius: int = 10,
                      fg_threshold: float = trimap.FG_THRESHOLD) -> np.ndarray:
    """A float trimap [H, W] in {0, 0.5, 1} from a ground-truth matte (deterministic), for
    datasets that ship no trimaps: the training recipe's trimap (``imaging.trimap``: fg =
    alpha >= 0.9, not_bg = alpha > 0, band of ``radius`` pixels, square window of side
    ``2 * radius + 1``), so training and evaluation agree on what "unknown" means.
    """
    return trimap.trimap_from_float(as_alpha(gt), radius, fg_threshold)


def mse(pred, gt, mask=None) -> float:
    """Mean squared error over the mask; alpha in [0, 1]."""
    a, g, m = _pair(pred, gt, mask)
    return float(np.mean((a - g)[m] ** 2)) if m.any() else math.nan


def mad(pred, gt, mask=None) -> float:
    """Mean absolute difference over the mask; alpha in [0, 1]."""
    a, g, m = _pair(pred, gt, mask)
    return float(np.mean(np.abs(a - g)[m])) if m.any() else math.nan


def sad(pred, gt, mask=None) -> float:
    """Sum of absolute differences over the mask, divided by 1000."""
    a, g, m = _pair(pred, gt, mask)
    return float(np.sum(np.abs(a - g)[m]) / 1000.0)


def gaussian_kernels(sigma: float = GRAD_SIGMA) -> Tuple[np.ndarray, np.ndarray]:
    """The 1-D smoothing and derivative kernels used for gradients, on taps -r..r, r=ceil(3 sigma).

    Smoothing: w(k) = exp(-k^2 / (2 sigma^2)), normalised to sum 1 (keeps constants).
    Derivative: d(k) = k * w(k) / sum_j(j^2 w(j)), so that correlating it with the ramp f(x) = x
    gives exactly 1 (the gradient is in alpha per pixel). For sigma 1.4: r = 5, 11 taps.
    """
    r = int(math.ceil(3.0 * sigma))
    k = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-(k ** 2) / (2.0 * sigma ** 2))
    w /= w.sum()
    d = k * w / np.sum(k ** 2 * w)
    return w, d


def gaussian_gradient_magnitude(alpha, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """|grad alpha| [H, W] with first-order Gaussian-derivative filters (alpha per pixel).

    d/dx = correlate with the derivative kernel along x and the smoothing kernel along y (and
    vice versa for d/dy); borders replicate the edge pixel (scipy mode 'nearest').
    """
    a = as_alpha(alpha)
    w, d = gaussian_kernels(sigma)
    gx = ndimage.correlate1d(ndimage.correlate1d(a, d, axis=1, mode="nearest"), w, axis=0,
                             mode="nearest")
    gy = ndimage.correlate1d(ndimage.correlate1d(a, d, axis=0, mode="nearest"), w, axis=1,
                             mode="nearest")
    return np.sqrt(gx ** 2 + gy ** 2)


def gradient_error(pred, gt, mask=None, sigma: float = GRAD_SIGMA) -> float:
    """sum over the mask of (|grad a| - |grad g|)^2, divided by 1000 (see the module doc)."""
    a, g, m = _pair(pred, gt, mask)
    diff = gaussian_gradient_magnitude(a, sigma) - gaussian_gradient_magnitude(g, sigma)
    return float(np.sum((diff ** 2)[m]) / 1000.0)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(binary, structure=_EIGHT)
    if n == 0:
        return np.zeros(binary.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def connectivity_levels(pred, gt, step: float = CONN_STEP) -> np.ndarray:
    """l [H, W]: the last threshold at which each pixel was still connected.

    Thresholds t_k = k / n, n = round(1 / step), k = 1..n. At each t_k the largest 8-connected
    component of (a >= t_k) & (g >= t_k) is taken; a pixel outside it, not yet assigned, gets
    l = t_(k-1). Pixels inside at every threshold get l = 1.
    """
    a, g, _ = _pair(pred, gt, None)
    n = int(round(1.0 / step))
    level = np.full(a.shape, -1.0)
    for k in range(1, n + 1):
        t = k / n
        omega = _largest_component((a >= t) & (g >= t))
        level[(level < 0) & ~omega] = (k - 1) / n
    level[level < 0] = 1.0
    return level


def connectivity_error(pred, gt, mask=None, step: float = CONN_STEP,
                       cutoff: float = CONN_CUTOFF) -> float:
    """sum over the mask of |phi(a) - phi(g)|, divided by 1000.

    phi(x) = 1 - d * (d >= cutoff) with d = x - l and l from ``connectivity_levels``.
    """
    a, g, m = _pair(pred, gt, mask)
    level = connectivity_levels(a, g, step)
    da, dg = a - level, g - level
    phi_a = 1.0 - da * (da >= cutoff)
    phi_g = 1.0 - dg * (dg >= cutoff)
    return float(np.sum(np.abs(phi_a - phi_g)[m]) / 1000.0)


def compute_metrics(pred, gt, mask=None) -> Dict[str, float]:
    """All five metrics ``METRIC_NAMES`` of one matte, as a dict of floats."""
    a, g, m = _pair(pred, gt, mask)
    return {
        "mse": mse(a, g, m),
        "mad": mad(a, g, m),
        "sad": sad(a, g, m),
        "grad": gradient_error(a, g, m),
        "conn": connectivity_error(a, g, m),
    }


def average_metrics(rows) -> Dict[str, float]:
    """Per-metric mean over ``compute_metrics`` dicts, skipping nan (e.g. empty masks)."""
    out = {}
    for name in METRIC_NAMES:
        values = np.array([r[name] for r in rows if name in r], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if values.size else math.nan
    return out
