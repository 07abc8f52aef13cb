"""Building blocks shared by the backbone and the MODNet heads.

Everything here is NHWC and behaves number for number like the PyTorch modules the released
MODNet was trained with:

* ``BatchNorm`` follows PyTorch's update rule (momentum 0.1, eps 1e-5, running variance updated
  with the *unbiased* batch variance), and averages its statistics over ``axis_name`` when the
  model runs under ``pmap`` so that N devices behave like one device with the global batch.
* ``IBNorm`` is BatchNorm on the first ``C // 2`` channels and InstanceNorm on the rest.
* ``conv`` / ``DepthwiseConv`` use explicit symmetric padding (XLA's ``'SAME'`` pads stride-2
  convolutions asymmetrically, PyTorch does not) and the release's kaiming-uniform init.
* The bilinear resizes reproduce ``F.interpolate(mode='bilinear', align_corners=False)`` for
  the exact factors MODNet uses, without the anti-aliasing ``jax.image.resize`` applies by
  default when shrinking.

Parameter names follow the PyTorch ones (``scale``/``bias`` <-> ``weight``/``bias``,
``mean``/``var`` <-> ``running_mean``/``running_var``) so conversion is a renaming.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

Dtype = Any

# torch.nn.init.kaiming_uniform_(mode='fan_in', nonlinearity='relu'): bound = sqrt(6 / fan_in).
kaiming_uniform_relu = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")
# PyTorch's default nn.Linear / nn.Conv2d init (kaiming_uniform_ with a=sqrt(5)):
# bound = 1 / sqrt(fan_in).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # PyTorch convention: new = (1 - m) * old + m * batch.
IN_EPS = 1e-5

DEPTHWISE_IMPLS = ("auto", "xla", "shifted")


def _stat_dtype(x):
    """Normalisation statistics in at least float32 (bf16 compute keeps fp32 statistics)."""
    return jnp.promote_types(x.dtype, jnp.float32)


class BatchNorm(nn.Module):
    """PyTorch-semantics BatchNorm2d over the last axis.

    x: [..., C]. ``use_running_average=False`` normalises with the (biased) batch variance and,
    when the ``batch_stats`` collection is mutable, updates the running statistics with the
    unbiased one, exactly as ``torch.nn.BatchNorm2d`` in train mode.
    """

    use_running_average: bool = False
    axis_name: Optional[str] = None
    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))

        x32 = x.astype(_stat_dtype(x))
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            count = 1
            for a in axes:
                count *= x.shape[a]
            mean = jnp.mean(x32, axes)
            if self.axis_name is not None and not self.is_initializing():
                mean = jax.lax.pmean(mean, self.axis_name)
                count = count * jax.lax.psum(1, self.axis_name)
            # Two passes (mean first, then centred squares) like PyTorch, instead of
            # E[x^2] - E[x]^2, which loses digits when |mean| >> std.
            var = jnp.mean(jnp.square(x32 - mean), axes)
            if self.axis_name is not None and not self.is_initializing():
                var = jax.lax.pmean(var, self.axis_name)
            if not self.is_initializing() and self.is_mutable_collection("batch_stats"):
                unbiased = var * (count / max(count - 1, 1))
                m = self.momentum
                ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
                ra_var.value = (1.0 - m) * ra_var.value + m * unbiased
        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        y = (x32 - mean) * inv + bias
        return y.astype(self.dtype)


def instance_norm(x, eps: float = IN_EPS):
    """InstanceNorm2d(affine=False, track_running_stats=False): per sample and channel over H, W.

    x: [B, H, W, C]. Uses the biased variance, identical in train and eval mode.
    """
    x32 = x.astype(_stat_dtype(x))
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class IBNorm(nn.Module):
    """Batch norm on channels [0, C//2), instance norm on [C//2, C); output in that order."""

    use_running_average: bool = False
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c_bn = x.shape[-1] // 2
        bn = BatchNorm(self.use_running_average, self.axis_name, dtype=self.dtype, name="bnorm")
        return jnp.concatenate(
            [bn(x[..., :c_bn]), instance_norm(x[..., c_bn:]).astype(self.dtype)], axis=-1
        )


def conv(features: int, kernel: int, stride: int = 1, padding: Optional[int] = None,
         use_bias: bool = True, dtype: Dtype = jnp.float32, name: Optional[str] = None):
    """A PyTorch-style Conv2d: explicit symmetric padding (default ``kernel // 2``)."""
    pad = kernel // 2 if padding is None else padding
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=kaiming_uniform_relu, bias_init=nn.initializers.zeros, name=name,
    )


def resolve_depthwise_impl(impl: str) -> str:
    """'auto' picks the shifted sum on CPU (XLA:CPU's grouped conv is 5-19x slower than it)."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise_impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "xla"
    return impl


def depthwise_conv_shifted(x, kernel, stride: int = 1, padding: int = 1, dilation: int = 1):
    """Depthwise convolution as a sum of k*k shifted, scaled copies of the input.

    x: [B, H, W, C]; kernel: [k, k, 1, C] (the layout of a grouped ``lax`` conv). Computes the
    same numbers as the grouped convolution up to fp32 summation order (~1e-7 relative).
    """
    k = kernel.shape[0]
    b, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    h_out = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    w_out = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    out = None
    for i in range(k):
        for j in range(k):
            y0, x0 = i * dilation, j * dilation
            tap = jax.lax.slice(
                xp, (0, y0, x0, 0),
                (b, y0 + (h_out - 1) * stride + 1, x0 + (w_out - 1) * stride + 1, c),
                (1, stride, stride, 1),
            )
            term = tap * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


class DepthwiseConv(nn.Module):
    """Depthwise k x k conv (no bias), PyTorch padding, with a switchable implementation.

    Both implementations share the parameter ``kernel: [k, k, 1, C]`` and compute the same
    function; ``impl='auto'`` chooses per backend at trace time.
    """

    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    impl: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        k = self.kernel_size
        kernel = self.param("kernel", kaiming_uniform_relu, (k, k, 1, c), jnp.float32)
        kernel = kernel.astype(self.dtype)
        x = x.astype(self.dtype)
        pad = self.dilation * (k - 1) // 2
        if resolve_depthwise_impl(self.impl) == "shifted":
            return depthwise_conv_shifted(x, kernel, self.stride, pad, self.dilation)
        return jax.lax.conv_general_dilated(
            x, kernel, (self.stride, self.stride), ((pad, pad), (pad, pad)),
            rhs_dilation=(self.dilation, self.dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
        )


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


class ConvIBNormRelu(nn.Module):
    """The release's ``Conv2dIBNormRelu``: conv (bias) -> IBNorm (optional) -> ReLU (optional).

    Submodule names mirror the PyTorch keys ``layers.0`` (conv) and ``layers.1.bnorm``.
    """

    features: int
    kernel_size: int
    stride: int = 1
    with_ibn: bool = True
    with_relu: bool = True
    use_running_average: bool = False
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = conv(self.features, self.kernel_size, self.stride, dtype=self.dtype,
                 name="layers_0")(x)
        if self.with_ibn:
            x = IBNorm(self.use_running_average, self.axis_name, self.dtype, name="layers_1")(x)
        if self.with_relu:
            x = nn.relu(x)
        return x


def check_spatial(shape: Sequence[int], multiple: int = 32):
    """Raise a clear error for inputs MODNet cannot take (instead of a concat shape crash)."""
    if len(shape) != 4:
        raise ValueError(f"MODNet expects an NHWC batch [B, H, W, 3], got shape {tuple(shape)}")
    _, h, w, _ = shape
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise ValueError(
            f"MODNet input height and width must be positive multiples of {multiple}, got "
            f"{h}x{w}; resize or pad the image first (e.g. floor each side to a multiple of "
            f"{multiple}, as modnet_jax's inference pre-processing does)"
        )
