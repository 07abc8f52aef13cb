"""Array functions (no parameters, no state) the MODNet layers are built from.

NHWC throughout. Two groups:

* resizes that reproduce ``F.interpolate(mode='bilinear', align_corners=False)`` for the exact
  factors MODNet uses, without the anti-aliasing ``jax.image.resize`` applies by default when
  shrinking (``downsample_bilinear``, ``upsample2x_bilinear``, ``resize_bilinear``);
* CPU-friendly formulations of two convolutions with hand-written gradients:
  ``depthwise_conv_shifted`` (XLA:CPU's grouped convolution is much slower than a shifted sum
  of k*k multiply-adds) and ``conv_upsampled`` (a conv of a x2-upsampled input with its taps
  applied before the upsampling). Both compute the plain functions up to fp32 summation order;
  tests/test_fast_paths.py and tests/test_model.py check values and gradients.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp


def stat_dtype(x):
    """Normalisation statistics in at least float32 (bf16 compute keeps fp32 statistics)."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _shifted_sum(x, kernel, stride: int, padding: Sequence[Sequence[int]], dilation: int):
    """sum_ij kernel[i, j, 0] * x_pad[s*y + d*i, s*x + d*j]: a depthwise correlation.

    x: [B, H, W, C]; kernel: [k, k, 1, C]; padding ((top, bottom), (left, right)), zeros.
    Products and sums in at least float32 (a bf16 running sum of k*k taps would lose about
    log2(k*k) of bf16's 8 bits), the result in x's dtype, as a grouped conv does.
    """
    acc = stat_dtype(x)
    k = kernel.shape[0]
    (pt, pb), (pl, pr) = padding
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    h_out = (xp.shape[1] - dilation * (k - 1) - 1) // stride + 1
    w_out = (xp.shape[2] - dilation * (k - 1) - 1) // stride + 1
    out = None
    for i, j, tap in _taps(xp, k, stride, dilation, h_out, w_out):
        term = tap.astype(acc) * kernel[i, j, 0].astype(acc)
        out = term if out is None else out + term
    return out.astype(x.dtype)


def _taps(xp, k: int, stride: int, dilation: int, h_out: int, w_out: int):
    """(i, j, xp[:, s*y + d*i, s*x + d*j, :] for the h_out x w_out output grid) per tap."""
    b, _, _, c = xp.shape
    for i in range(k):
        for j in range(k):
            y0, x0 = i * dilation, j * dilation
            yield i, j, jax.lax.slice(
                xp, (0, y0, x0, 0),
                (b, y0 + (h_out - 1) * stride + 1, x0 + (w_out - 1) * stride + 1, c),
                (1, stride, stride, 1),
            )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def depthwise_conv_shifted(x, kernel, stride: int = 1, padding: int = 1, dilation: int = 1):
    """Depthwise convolution as a sum of k*k shifted, scaled copies of the input.

    x: [B, H, W, C]; kernel: [k, k, 1, C] (the layout of a grouped ``lax`` conv). Computes the
    same numbers as the grouped convolution up to fp32 summation order (~1e-7 relative).

    The gradient is written by hand (``_dw_shifted_bwd``): the input gradient is the same
    shifted sum over the (stride-dilated) output gradient with the flipped kernel, the kernel
    gradient is k*k multiply-reductions. Autodiff of the slices instead pads every one of the
    k*k terms back to full size, which XLA:CPU runs much slower.
    """
    p = ((padding, padding), (padding, padding))
    return _shifted_sum(x, kernel, stride, p, dilation)


def _dw_shifted_fwd(x, kernel, stride, padding, dilation):
    return depthwise_conv_shifted(x, kernel, stride, padding, dilation), (x, kernel)


def _dw_shifted_bwd(stride, padding, dilation, res, g):
    x, kernel = res
    k = kernel.shape[0]
    _, h, w, c = x.shape
    h_out, w_out = g.shape[1], g.shape[2]
    span = dilation * (k - 1)
    # dx[v] = sum_i g_dilated[v + p - d*i] * kernel[i]: a stride-1 shifted sum over the output
    # gradient spread onto the input grid (stride - 1 zeros between), with the flipped kernel.
    zero = jnp.zeros((), g.dtype)
    pads = [(0, 0, 0),
            (span - padding, h - 1 + padding - stride * (h_out - 1), stride - 1),
            (span - padding, w - 1 + padding - stride * (w_out - 1), stride - 1),
            (0, 0, 0)]
    g_spread = jax.lax.pad(g, zero, pads)
    dx = _shifted_sum(g_spread, kernel[::-1, ::-1], 1, ((0, 0), (0, 0)), dilation)
    # dkernel[i, j] = sum over batch and pixels of tap_ij(x) * g (accumulated in >= fp32).
    acc = stat_dtype(x)
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    sums = [jnp.sum(tap.astype(acc) * g.astype(acc), axis=(0, 1, 2))
            for _, _, tap in _taps(xp, k, stride, dilation, h_out, w_out)]
    dkernel = jnp.stack(sums).reshape(k, k, 1, c).astype(kernel.dtype)
    return dx.astype(x.dtype), dkernel


depthwise_conv_shifted.defvjp(_dw_shifted_fwd, _dw_shifted_bwd)


def downsample_bilinear(x, factor: int):
    """``F.interpolate(x, scale_factor=1/factor, mode='bilinear', align_corners=False)``.

    x: [B, H, W, C] with H, W divisible by ``factor`` (even). PyTorch samples the source at
    ``factor * i + (factor - 1) / 2`` without anti-aliasing, i.e. the mean of the two central
    pixels of every ``factor``-pixel cell in each axis.
    """
    if factor == 1:
        return x
    if factor % 2:
        raise ValueError(f"downsample_bilinear needs an even factor, got {factor}")
    a = factor // 2 - 1
    rows = 0.5 * x[:, a::factor] + 0.5 * x[:, a + 1::factor]
    return 0.5 * rows[:, :, a::factor] + 0.5 * rows[:, :, a + 1::factor]


def _upsample2x_axis(x, axis: int):
    n = x.shape[axis]
    first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
    prev = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), last], axis=axis)
    even = 0.25 * prev + 0.75 * x
    odd = 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def upsample2x_bilinear(x):
    """``F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False)``, x: [B,H,W,C].

    Output pixel 2k is 0.25 * x[k-1] + 0.75 * x[k] and 2k+1 is 0.75 * x[k] + 0.25 * x[k+1]
    (edges clamped), done separably with shifts instead of a resize matrix.
    """
    return _upsample2x_axis(_upsample2x_axis(x, 1), 2)


def resize_bilinear(x, height: int, width: int):
    """General bilinear resize with half-pixel centres and no anti-aliasing. x: [B, H, W, C]."""
    b, _, _, c = x.shape
    return jax.image.resize(x, (b, height, width, c), method="bilinear", antialias=False)


def conv_nhwc(x, kernel, stride: int, pad: int):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _upsample2x_transpose(dz):
    """The adjoint of ``upsample2x_bilinear``: [B, 2H, 2W, C] -> [B, H, W, C]."""
    b, h2, w2, c = dz.shape
    spec = jax.ShapeDtypeStruct((b, h2 // 2, w2 // 2, c), dz.dtype)
    return jax.linear_transpose(upsample2x_bilinear, spec)(dz)[0]


@jax.custom_vjp
def conv_upsampled(x, kernel):
    """``conv(upsample2x_bilinear(x), kernel)`` (stride 1, 'same' zero padding, no bias).

    x: [B, H, W, C_in]; kernel: [k, k, C_in, C_out] (k odd) -> [B, 2H, 2W, C_out].

    Upsampling and padding act on each channel alone and the kernel taps only mix channels,
    so they commute: out = sum_t shift_t(up(x @ kernel_t)). Applying the k*k taps at the low
    resolution is one [C_in, k*k*C_out] matmul on H*W pixels instead of a conv on 4*H*W
    pixels: 4x fewer multiply-adds, a win when C_in >> C_out (conv_lr16x: 1280 -> 96, 5x5).
    Numbers differ from the plain order by fp32 summation order only. The gradient is written
    by hand with the same structure (autodiff of the channel slices is very slow on XLA:CPU).
    """
    return _conv_upsampled_fwd(x, kernel)[0]


def _conv_upsampled_fwd(x, kernel):
    return conv_upsampled_taps(x, kernel), (x, kernel)


def conv_upsampled_taps(x, kernel, upsample=upsample2x_bilinear):
    """``conv_upsampled``'s forward pass (no custom gradient) with the x2 upsampling given:
    any per-channel operation that commutes with the kernel taps (they only mix channels)."""
    k, _, c_in, c_out = kernel.shape
    p = k // 2
    _, h, w, _ = x.shape
    z = jnp.dot(x, jnp.transpose(kernel, (2, 0, 1, 3)).reshape(c_in, k * k * c_out))
    up = upsample(z)
    zp = jnp.pad(up, ((0, 0), (p, p), (p, p), (0, 0)))
    out = None
    for i in range(k):
        for j in range(k):
            t = (i * k + j) * c_out
            term = zp[:, i:i + 2 * h, j:j + 2 * w, t:t + c_out]
            out = term if out is None else out + term
    return out


def _conv_upsampled_bwd(res, g):
    x, kernel = res
    k, _, c_in, c_out = kernel.shape
    p = k // 2
    _, h2, w2, _ = g.shape
    # Tap (i, j) read z_up[y + i - p]: its cotangent is g[u - i + p] (zero outside), a window
    # of g padded by p.
    gp = jnp.pad(g, ((0, 0), (p, p), (p, p), (0, 0)))
    dz_up = jnp.concatenate([gp[:, 2 * p - i:2 * p - i + h2, 2 * p - j:2 * p - j + w2]
                             for i in range(k) for j in range(k)], axis=-1)
    dz = _upsample2x_transpose(dz_up)  # [B, H, W, k*k*C_out]
    w_mat = jnp.transpose(kernel, (2, 0, 1, 3)).reshape(c_in, k * k * c_out)
    dx = jnp.dot(dz, w_mat.T)
    dw = jnp.einsum("bhwc,bhwt->ct", x, dz,
                    preferred_element_type=stat_dtype(x)).reshape(c_in, k, k, c_out)
    return dx.astype(x.dtype), jnp.transpose(dw, (1, 2, 0, 3)).astype(kernel.dtype)


conv_upsampled.defvjp(_conv_upsampled_fwd, _conv_upsampled_bwd)
