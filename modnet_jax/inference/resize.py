"""Separable resizes as gather "taps", computed on the device (jax.numpy; no files, no model).

A 1-D resize from ``n_in`` to ``n_out`` samples is a table of taps: output i is
``sum_k w[k, i] * x[idx[k, i]]``, divided by ``divisor[i]``. The tables are built on the host
(numpy, once per size pair) and passed to the compiled programs as arguments, so the cost on
the device is linear in the image size (K gathers of the output's size, K = the widest tap).

- "area" (the release's interpolation, PyTorch's adaptive average pooling): output i averages
  input indices floor(i * n_in / n_out) .. ceil((i + 1) * n_in / n_out) - 1. Weights are 0/1
  and the divisor is the count, so on uint8 pixels the sums are exact integers in float32 and
  the only rounding is the final division: the result equals ``preprocess.area_resize`` (float64
  sums) to the last bit or one unit in the last place.
- "bilinear": OpenCV's ``INTER_LINEAR`` (half-pixel centres, edge clamped), 2 taps, divisor 1;
  equal to ``cv2.resize`` on float mattes within 2e-6 (OpenCV's own float rounding).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Taps(NamedTuple):
    """idx [K, n_out] int32, weight [K, n_out] float32, divisor [n_out] float32."""

    idx: np.ndarray
    weight: np.ndarray
    divisor: np.ndarray


def area_taps(n_in: int, n_out: int) -> Taps:
    i = np.arange(n_out, dtype=np.int64)
    starts = (i * n_in) // n_out
    ends = -((-(i + 1) * n_in) // n_out)
    counts = ends - starts
    k = np.arange(int(counts.max()))[:, None]
    idx = np.minimum(starts[None, :] + k, n_in - 1)
    weight = (k < counts[None, :]).astype(np.float32)
    return Taps(idx.astype(np.int32), weight, counts.astype(np.float32))


def bilinear_taps(n_in: int, n_out: int) -> Taps:
    """OpenCV INTER_LINEAR coefficients, computed as OpenCV does (position in double, rounded to
    float, then split into an integer and a fraction)."""
    src = ((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5).astype(np.float32)
    left = np.floor(src).astype(np.int64)
    frac = (src - left.astype(np.float32)).astype(np.float32)
    low = left < 0
    frac[low], left[low] = 0.0, 0
    high = left >= n_in - 1
    frac[high], left[high] = 0.0, n_in - 1
    idx = np.stack([left, np.minimum(left + 1, n_in - 1)]).astype(np.int32)
    weight = np.stack([np.float32(1.0) - frac, frac]).astype(np.float32)
    return Taps(idx, weight, np.ones(n_out, np.float32))


def make_taps(n_in: int, n_out: int, mode: str = "area") -> Taps:
    if mode == "area":
        return area_taps(n_in, n_out)
    if mode == "bilinear":
        return bilinear_taps(n_in, n_out)
    raise ValueError(f"resize mode must be 'area' or 'bilinear', got {mode!r}")


def _apply_axis(x, idx, weight, axis: int):
    """sum_k weight[k] * x gathered at idx[k] along ``axis`` (float32, no division)."""
    shape = [1] * x.ndim
    shape[axis] = weight.shape[1]
    out = None
    for k in range(idx.shape[0]):
        term = jnp.take(x, idx[k], axis=axis).astype(jnp.float32) * weight[k].reshape(shape)
        out = term if out is None else out + term
    return out


def exact_divide(x, y):
    """x / y correctly rounded, as numpy computes it, for y broadcastable to x.

    XLA rewrites a division by a broadcast value (or a constant) into a multiplication by its
    reciprocal, and (a / b) / c into a / (b * c), which round differently; hiding both operands
    behind a barrier keeps one true elementwise division.
    """
    x, y = jax.lax.optimization_barrier((x, jnp.broadcast_to(jnp.asarray(y, x.dtype), x.shape)))
    return x / y


def resize_hw(x, rows: Taps, cols: Taps, exact: bool = False):
    """Resize [N, H, W] or [N, H, W, C] (any dtype) over axes 1 and 2: float32 result.

    Both axes are summed first and divided once at the end (exact integer sums for uint8
    input). ``exact``: a correctly rounded division (``exact_divide``) instead of XLA's
    multiplication by the reciprocal (within one unit in the last place).
    """
    out = _apply_axis(_apply_axis(x, rows.idx, rows.weight, 1), cols.idx, cols.weight, 2)
    div = rows.divisor[:, None] * cols.divisor[None, :]
    if x.ndim == 4:
        div = div[..., None]
    return exact_divide(out, div[None]) if exact else out / div[None]
