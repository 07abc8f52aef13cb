"""MobileNetV2 (width 1.0, no classifier) as MODNet's low-resolution encoder.

Module names mirror the PyTorch keys of the release (``features.N.conv.J``, ``features.0.0``)
with ``_`` for ``.`` so that checkpoint conversion is a mechanical renaming:

* ``features_0``: conv 3x3 s2 (3->32) ``0`` + BN ``1`` + ReLU6
* ``features_1``: depthwise 3x3 ``conv_0`` + BN ``conv_1`` + ReLU6, pointwise ``conv_3`` + BN
  ``conv_4``
* ``features_2..17``: pointwise ``conv_0`` + BN ``conv_1`` + ReLU6, depthwise ``conv_3`` + BN
  ``conv_4`` + ReLU6, pointwise ``conv_6`` + BN ``conv_7``; residual when stride 1 and in == out
* ``features_18``: conv 1x1 (320->1280) ``0`` + BN ``1`` + ReLU6

All convs are bias-free. The forward pass returns the feature taps MODNet uses.

``fast_paths`` ('auto' = on for the CPU backend) only changes how the stride-2 expansion blocks
are computed (padding before the expansion, see ``InvertedResidual``); ``depthwise_impl``
chooses the depthwise implementation. Neither changes the variables or, beyond fp32 summation
order, the numbers.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import jax.numpy as jnp
from flax import linen as nn

from modnet_jax.models.layers import BatchNorm, DepthwiseConv, conv, resolve_fast_paths

Dtype = Any

# (expansion t, output channels c, repeats n, first stride s), the standard MobileNetV2 table.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def block_specs():
    """[(in, hidden, out, stride, expansion)] for features 1..17."""
    specs, c_in = [], STEM_CHANNELS
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            specs.append((c_in, c_in * t, c, s if i == 0 else 1, t))
            c_in = c
    return specs


class InvertedResidual(nn.Module):
    """x: [B, H, W, in] -> [B, H/stride, W/stride, out]."""

    out_channels: int
    stride: int
    expansion: int
    use_running_average: bool = False
    axis_name: Optional[str] = None
    depthwise_impl: str = "auto"
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, x):
        c_in = x.shape[-1]
        hidden = c_in * self.expansion

        def bn(name, border=0):
            return BatchNorm(self.use_running_average, self.axis_name, dtype=self.dtype,
                             stats_border=border, name=name)

        def dw(name, padding=None):
            return DepthwiseConv(3, self.stride, impl=self.depthwise_impl, dtype=self.dtype,
                                 padding=padding, name=name)

        if self.expansion == 1:
            h = nn.relu6(bn("conv_1")(dw("conv_0")(x)))
            h = bn("conv_4")(conv(self.out_channels, 1, use_bias=False, dtype=self.dtype,
                                  name="conv_3")(h))
        elif self.stride == 2 and resolve_fast_paths(self.fast_paths):
            # Fast path: the depthwise conv's zero padding is made before the expansion
            # (pad the narrow input, run the 1x1 conv + BN + ReLU6 on it, zero the margin
            # again) instead of padding the 6x wider expanded map; XLA:CPU's pad of that map
            # after the ReLU6 was slower than this whole detour. BN statistics skip the
            # margin, so every number is the plain path's up to summation order.
            _, hgt, wid, _ = x.shape
            xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            inside = jnp.pad(jnp.ones((1, hgt, wid, 1), self.dtype),
                             ((0, 0), (1, 1), (1, 1), (0, 0)))
            h = conv(hidden, 1, use_bias=False, dtype=self.dtype, name="conv_0")(xp)
            h = nn.relu6(bn("conv_1", border=1)(h)) * inside
            h = nn.relu6(bn("conv_4")(dw("conv_3", padding=0)(h)))
            h = bn("conv_7")(conv(self.out_channels, 1, use_bias=False, dtype=self.dtype,
                                  name="conv_6")(h))
        else:
            h = nn.relu6(bn("conv_1")(conv(hidden, 1, use_bias=False, dtype=self.dtype,
                                           name="conv_0")(x)))
            h = nn.relu6(bn("conv_4")(dw("conv_3")(h)))
            h = bn("conv_7")(conv(self.out_channels, 1, use_bias=False, dtype=self.dtype,
                                  name="conv_6")(h))
        if self.stride == 1 and c_in == self.out_channels:
            h = x + h
        return h


class MobileNetV2(nn.Module):
    """Encoder. x: [B, H, W, 3] normalised to [-1, 1] -> dict of feature taps.

    Returns ``{"enc2x": [B,H/2,W/2,16], "enc4x": [B,H/4,W/4,24], "enc8x": [..,32],
    "enc16x": [..,96], "enc32x": [B,H/32,W/32,1280]}``.
    """

    use_running_average: bool = False
    axis_name: Optional[str] = None
    depthwise_impl: str = "auto"
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, x) -> Dict[str, Any]:
        def bn(name):
            return BatchNorm(self.use_running_average, self.axis_name, dtype=self.dtype, name=name)

        x = x.astype(self.dtype)
        # features.0 is Sequential(conv, bn, relu6): children named "0" and "1" like PyTorch.
        stem = conv(STEM_CHANNELS, 3, 2, padding=1, use_bias=False, dtype=self.dtype,
                    name="features_0_0")
        x = nn.relu6(bn("features_0_1")(stem(x)))
        taps = {}
        for idx, (_, _, c_out, stride, t) in enumerate(block_specs(), start=1):
            x = InvertedResidual(c_out, stride, t, self.use_running_average, self.axis_name,
                                 self.depthwise_impl, self.dtype, self.fast_paths,
                                 name=f"features_{idx}")(x)
            if idx == 1:
                taps["enc2x"] = x
            elif idx == 3:
                taps["enc4x"] = x
            elif idx == 6:
                taps["enc8x"] = x
            elif idx == 13:
                taps["enc16x"] = x
        x = conv(LAST_CHANNELS, 1, use_bias=False, dtype=self.dtype, name="features_18_0")(x)
        taps["enc32x"] = nn.relu6(bn("features_18_1")(x))
        return taps
