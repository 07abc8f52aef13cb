"""Building blocks shared by the backbone and the MODNet heads.

Everything here is NHWC and behaves number for number like the PyTorch modules the released
MODNet was trained with:

* ``BatchNorm`` follows PyTorch's update rule (momentum 0.1, eps 1e-5, running variance updated
  with the *unbiased* batch variance), and averages its statistics over ``axis_name`` when the
  model runs under ``pmap`` so that N devices behave like one device with the global batch.
* ``IBNorm`` is BatchNorm on the first ``C // 2`` channels and InstanceNorm on the rest.
* ``conv`` / ``DepthwiseConv`` use explicit symmetric padding (XLA's ``'SAME'`` pads stride-2
  convolutions asymmetrically, PyTorch does not) and the release's kaiming-uniform init.
* The bilinear resizes and the hand-written convolution kernels are plain array functions in
  ``ops.py``.

Fast paths (``fast_paths='auto'|'on'|'off'``, 'auto' = on when the default backend is the CPU)
compute the same functions with different, faster XLA programs; the numbers agree with the plain
path up to fp32 summation order and tests/test_fast_paths.py checks every one:

* ``Conv2d`` given its input in parts convolves parts whose width is not a multiple of 8 (the
  3 image channels concatenated to 32 features) separately and sums, instead of running one
  conv over an awkward 35/99-channel concat (XLA:CPU runs those at half speed);
* ``Conv2d(upsample=True)`` with many more input than output channels applies the kernel taps
  before the bilinear x2 upsampling (both are linear and act on different axes, so they
  commute): 4x fewer multiply-adds for ``conv_lr16x`` (5x5, 1280 -> 96);
* ``IBNorm`` normalises both halves in one pass with per-(sample, channel) coefficients instead
  of slicing, normalising and concatenating (saves several full passes, most in training);
* the backbone's stride-2 expansion blocks pad before their 1x1 expansion (mobilenetv2.py).

The depthwise switch (``depthwise_impl``, 'auto' = 'shifted' on CPU) is separate: XLA:CPU's
grouped convolution is much slower than a shifted sum of k*k multiply-adds, whose gradient
is also written by hand (``ops.depthwise_conv_shifted``).

``SpatialMean`` and ``Upsample2x`` are parameter-free modules rather than plain functions so
that a method interceptor (``flax.linen.intercept_methods``) can change them, as it can change
``Conv2d.conv_input`` / ``upsampled_conv`` and the inputs of the other convolutions.

Parameter names follow the PyTorch ones (``scale``/``bias`` <-> ``weight``/``bias``,
``mean``/``var`` <-> ``running_mean``/``running_var``) so conversion is a renaming.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
from flax import linen as nn

from modnet_jax.models.ops import (
    conv_nhwc,
    stat_dtype,
    conv_upsampled,
    depthwise_conv_shifted,
    upsample2x_bilinear,
)

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
FAST_PATH_MODES = ("auto", "on", "off")



def _declare_bn_variables(mod: nn.Module, c: int):
    """BatchNorm's parameters and running statistics, declared on ``mod`` (in its compact call)."""
    scale = mod.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = mod.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = mod.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = mod.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    return scale, bias, ra_mean, ra_var


def _sync_mean(mod: nn.Module, axis_name: Optional[str], mean, count: int):
    """The batch mean (and element count) over every device of ``axis_name`` (None: local)."""
    if axis_name is not None and not mod.is_initializing():
        mean = jax.lax.pmean(mean, axis_name)
        count = count * jax.lax.psum(1, axis_name)
    return mean, count


def _sync_var(mod: nn.Module, axis_name: Optional[str], var):
    if axis_name is not None and not mod.is_initializing():
        var = jax.lax.pmean(var, axis_name)
    return var


def _update_running_stats(mod: nn.Module, ra_mean, ra_var, mean, var, count, momentum: float):
    """PyTorch's rule: running_var follows the *unbiased* batch variance."""
    if not mod.is_initializing() and mod.is_mutable_collection("batch_stats"):
        unbiased = var * (count / max(count - 1, 1))
        ra_mean.value = (1.0 - momentum) * ra_mean.value + momentum * mean
        ra_var.value = (1.0 - momentum) * ra_var.value + momentum * unbiased


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
    # x: [B, H, W, C] carrying a margin of this many pixels on each spatial side that is not
    # part of the feature map: batch statistics ignore it, the whole array is normalised.
    stats_border: int = 0

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        scale, bias, ra_mean, ra_var = _declare_bn_variables(self, c)

        x32 = x.astype(stat_dtype(x))
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            xs = x32
            if self.stats_border:
                m = self.stats_border
                xs = x32[:, m:x.shape[1] - m, m:x.shape[2] - m]
            count = 1
            for a in axes:
                count *= xs.shape[a]
            mean, count = _sync_mean(self, self.axis_name, jnp.mean(xs, axes), count)
            # Two passes (mean first, then centred squares) like PyTorch, instead of
            # E[x^2] - E[x]^2, which loses digits when |mean| >> std.
            var = _sync_var(self, self.axis_name, jnp.mean(jnp.square(xs - mean), axes))
            _update_running_stats(self, ra_mean, ra_var, mean, var, count, self.momentum)
        inv = jax.lax.rsqrt(var + self.epsilon) * scale
        y = (x32 - mean) * inv + bias
        return y.astype(self.dtype)


class SpatialMean(nn.Module):
    """[B, H, W, C] -> [B, C]: the mean over H and W (global average pooling)."""

    def __call__(self, x):
        return jnp.mean(x, axis=(1, 2))


class Upsample2x(nn.Module):
    """``ops.upsample2x_bilinear`` (PyTorch's bilinear x2, edges clamped)."""

    def __call__(self, x):
        return upsample2x_bilinear(x)


def instance_norm(x, eps: float = IN_EPS, mean_hw=None):
    """InstanceNorm2d(affine=False, track_running_stats=False): per sample and channel over H, W.

    x: [B, H, W, C]. Uses the biased variance, identical in train and eval mode. ``mean_hw``:
    the spatial mean to use (default ``jnp.mean`` over H, W).
    """
    mean_hw = mean_hw or (lambda t: jnp.mean(t, axis=(1, 2)))
    x32 = x.astype(stat_dtype(x))
    mean = mean_hw(x32)[:, None, None, :]
    var = mean_hw(jnp.square(x32 - mean))[:, None, None, :]
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class IBNorm(nn.Module):
    """Batch norm on channels [0, C//2), instance norm on [C//2, C); output in that order.

    ``fused=True`` computes the same numbers in one pass (see ``_FusedIBNorm``); the variables
    are the same either way (``bnorm/{scale,bias}``, ``bnorm/{mean,var}``, C//2 each).
    """

    use_running_average: bool = False
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32
    fused: bool = False

    @nn.compact
    def __call__(self, x):
        if self.fused:
            return _FusedIBNorm(self.use_running_average, self.axis_name, dtype=self.dtype,
                                name="bnorm")(x)
        c_bn = x.shape[-1] // 2
        bn = BatchNorm(self.use_running_average, self.axis_name, dtype=self.dtype, name="bnorm")
        return jnp.concatenate(
            [bn(x[..., :c_bn]), instance_norm(x[..., c_bn:], mean_hw=SpatialMean()).astype(
                self.dtype)], axis=-1)


class _FusedIBNorm(nn.Module):
    """The whole IBNorm as one module holding the BatchNorm half's variables.

    x: [B, H, W, C]. Per sample b and channel c the output is ``(x - m[b,c]) * a[b,c] + s[b,c]``
    with m/a/s the batch mean / BN scale / BN bias on the first C//2 channels and the instance
    mean / 1/std / 0 on the rest: no slices or concatenations of the feature map. The batch mean
    is the mean of the per-sample means (equal sizes), so the statistics equal ``IBNorm``'s up to
    summation order; running statistics follow ``BatchNorm``'s rule (shared helpers).
    """

    use_running_average: bool = False
    axis_name: Optional[str] = None
    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPS
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        cb = c // 2
        scale, bias, ra_mean, ra_var = _declare_bn_variables(self, cb)
        mean_hw = SpatialMean()
        x32 = x.astype(stat_dtype(x))
        sample_mean = mean_hw(x32)  # [B, C]
        if self.use_running_average:
            mean_bn = ra_mean.value
        else:
            mean_bn, count = _sync_mean(self, self.axis_name,
                                        jnp.mean(sample_mean[:, :cb], axis=0), b * h * w)
        centre = jnp.concatenate(
            [jnp.broadcast_to(mean_bn.astype(x32.dtype), (b, cb)), sample_mean[:, cb:]], axis=-1)
        dev = x32 - centre[:, None, None, :]
        sample_var = mean_hw(jnp.square(dev))  # [B, C], about each centre
        if self.use_running_average:
            var_bn = ra_var.value
        else:
            var_bn = _sync_var(self, self.axis_name, jnp.mean(sample_var[:, :cb], axis=0))
            _update_running_stats(self, ra_mean, ra_var, mean_bn, var_bn, count, self.momentum)
        inv_bn = (jax.lax.rsqrt(var_bn + self.epsilon) * scale).astype(x32.dtype)
        inv = jnp.concatenate([jnp.broadcast_to(inv_bn, (b, cb)),
                               jax.lax.rsqrt(sample_var[:, cb:] + IN_EPS)], axis=-1)
        shift = jnp.concatenate([jnp.broadcast_to(bias.astype(x32.dtype), (b, cb)),
                                 jnp.zeros((b, c - cb), x32.dtype)], axis=-1)
        y = dev * inv[:, None, None, :] + shift[:, None, None, :]
        return y.astype(self.dtype)


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
    """'auto' picks the shifted sum on CPU (XLA:CPU's grouped conv is much slower there)."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"depthwise_impl must be one of {DEPTHWISE_IMPLS}, got {impl!r}")
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "xla"
    return impl


def resolve_fast_paths(mode: str) -> bool:
    """'auto' turns the fast paths on where they were measured to help: the CPU backend."""
    if mode not in FAST_PATH_MODES:
        raise ValueError(f"fast_paths must be one of {FAST_PATH_MODES}, got {mode!r}")
    if mode == "auto":
        return jax.default_backend() == "cpu"
    return mode == "on"


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
    padding: Optional[int] = None  # default: dilation * (k - 1) // 2 ('same' at stride 1)

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        k = self.kernel_size
        kernel = self.param("kernel", kaiming_uniform_relu, (k, k, 1, c), jnp.float32)
        kernel = kernel.astype(self.dtype)
        x = x.astype(self.dtype)
        pad = self.dilation * (k - 1) // 2 if self.padding is None else self.padding
        if resolve_depthwise_impl(self.impl) == "shifted":
            return depthwise_conv_shifted(x, kernel, self.stride, pad, self.dilation)
        return jax.lax.conv_general_dilated(
            x, kernel, (self.stride, self.stride), ((pad, pad), (pad, pad)),
            rhs_dilation=(self.dilation, self.dilation),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
        )


# A conv on an upsampled input is done as ``conv_upsampled`` when C_in >= this many times C_out.
UPSAMPLE_FUSE_MIN_RATIO = 8


def _channel_groups(widths: Sequence[int]):
    """Split part indices into runs: consecutive parts with widths % 8 == 0 stay together."""
    groups, run = [], []
    for idx, width in enumerate(widths):
        if width % 8 == 0:
            run.append(idx)
        else:
            if run:
                groups.append(run)
                run = []
            groups.append([idx])
    if run:
        groups.append(run)
    return groups


class Conv2d(nn.Module):
    """PyTorch-style Conv2d (bias, explicit symmetric padding) whose input may come in parts.

    ``__call__(x)`` with x one array [B, H, W, C] or a sequence of arrays concatenated along
    channels (the release's ``torch.cat`` before a conv); ``upsample=True`` first applies
    ``upsample2x_bilinear``. Parameters ``kernel`` [k, k, C_in, C_out] and ``bias`` [C_out]
    are those of ``flax.linen.Conv`` (same names, init and dtype rules), so checkpoints and
    ``fast`` on/off are interchangeable.

    ``fast=False`` runs exactly ``nn.Conv`` on the concatenated (upsampled) input. ``fast=True``
    computes the same function (fp32 summation order aside) as: a sum of one conv per group
    of parts (``_channel_groups``: a 3-channel image part gets its own conv instead of making a
    35- or 99-channel input), and, for an upsampled input with C_in >= 8 C_out at stride 1,
    ``conv_upsampled``.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: Optional[int] = None
    use_bias: bool = True
    upsample: bool = False
    fast: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Union[jax.Array, Sequence[jax.Array]]):
        parts = list(x) if isinstance(x, (list, tuple)) else [x]
        widths = [int(part.shape[-1]) for part in parts]
        k = self.kernel_size
        kernel = self.param("kernel", kaiming_uniform_relu, (k, k, sum(widths), self.features),
                            jnp.float32)
        bias = (self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
                if self.use_bias else None)
        pad = k // 2 if self.padding is None else self.padding
        kernel = kernel.astype(self.dtype)
        parts = [part.astype(self.dtype) for part in parts]

        if not self.fast:
            y = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
            y = conv_nhwc(self.conv_input(y), kernel, self.stride, pad)
        elif (self.upsample and self.stride == 1 and pad == k // 2 and k % 2 == 1
              and sum(widths) >= UPSAMPLE_FUSE_MIN_RATIO * self.features):
            y = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
            y = self.upsampled_conv(y, kernel)
        else:
            y = None
            offsets = [sum(widths[:i]) for i in range(len(widths))]
            for group in _channel_groups(widths):
                xs = [parts[i] for i in group]
                xg = self.conv_input(xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1))
                start = offsets[group[0]]
                width = sum(widths[i] for i in group)
                term = conv_nhwc(xg, kernel[:, :, start:start + width], self.stride, pad)
                y = term if y is None else y + term
        if bias is not None:
            y = y + bias.astype(self.dtype).reshape((1, 1, 1, -1))
        return y

    def conv_input(self, y):
        """The input as the conv reads it (x2 upsampled with ``upsample``)."""
        return upsample2x_bilinear(y) if self.upsample else y

    def upsampled_conv(self, y, kernel):
        """``conv(upsample2x(y), kernel)`` computed as ``ops.conv_upsampled``."""
        return conv_upsampled(y, kernel)


class ConvIBNormRelu(nn.Module):
    """The release's ``Conv2dIBNormRelu``: conv (bias) -> IBNorm (optional) -> ReLU (optional).

    Submodule names mirror the PyTorch keys ``layers.0`` (conv) and ``layers.1.bnorm``. The
    input may be a sequence of arrays (concatenated along channels) and ``upsample_input``
    applies the bilinear x2 upsampling first; ``fast_paths`` picks the implementation (see the
    module docstring), never the numbers or the variables.
    """

    features: int
    kernel_size: int
    stride: int = 1
    with_ibn: bool = True
    with_relu: bool = True
    use_running_average: bool = False
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32
    upsample_input: bool = False
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, x):
        fast = resolve_fast_paths(self.fast_paths)
        x = Conv2d(self.features, self.kernel_size, self.stride, upsample=self.upsample_input,
                   fast=fast, dtype=self.dtype, name="layers_0")(x)
        if self.with_ibn:
            x = IBNorm(self.use_running_average, self.axis_name, self.dtype, fused=fast,
                       name="layers_1")(x)
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
