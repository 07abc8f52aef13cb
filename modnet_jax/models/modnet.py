"""MODNet: trimap-free portrait matting (Ke et al., AAAI 2022), NHWC Flax linen.

Faithful to the released PyTorch model (``hr_channels=32``): a MobileNetV2 encoder, a
low-resolution semantic branch (SE block, or the paper's e-ASPP as an option), a
high-resolution detail branch and a fusion branch. Submodule names mirror the PyTorch keys
(``lr_branch.conv_lr16x.layers.0`` <-> ``lr_branch/conv_lr16x/layers_0``).

Modes (PyTorch terms in brackets):

* ``train=True``: BatchNorm uses batch statistics [model.train()]; call ``apply`` with
  ``mutable=["batch_stats"]`` to get the updated running averages back.
* ``train=False``: running averages [model.eval()].
* ``freeze_bn=True``: BatchNorm in inference mode while everything else trains (SOC).
* ``inference=True``: skip the semantic and detail heads (returns ``None`` for them); the matte
  is bit-identical to the full forward pass.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import jax.numpy as jnp
from flax import linen as nn

from modnet_jax.models.layers import (ConvIBNormRelu, DepthwiseConv, SpatialMean, Upsample2x,
                                      check_spatial, torch_default_init)
from modnet_jax.models.ops import downsample_bilinear
from modnet_jax.models.mobilenetv2 import MobileNetV2

Dtype = Any
LR_BRANCHES = ("se", "easpp")


def _out_dtype(x):
    """Heads and pooled statistics leave in float32 even under bf16 compute (float64 stays)."""
    return jnp.promote_types(x.dtype, jnp.float32)


class SEBlock(nn.Module):
    """Squeeze-excitation: x * sigmoid(W2 relu(W1 mean_hw(x))). x: [B, H, W, C]."""

    reduction: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        x_out = x.astype(_out_dtype(x))
        w = SpatialMean()(x_out)
        # Names mirror the release's Sequential: fc.0 (Linear), fc.1 ReLU, fc.2 (Linear).
        w = nn.relu(nn.Dense(c // self.reduction, use_bias=False, kernel_init=torch_default_init,
                             name="fc_0")(w))
        w = nn.sigmoid(nn.Dense(c, use_bias=False, kernel_init=torch_default_init,
                                name="fc_2")(w))
        return x * w[:, None, None, :].astype(x.dtype)


class EASPP(nn.Module):
    """The paper's efficient ASPP (Fig. 3), replacing the SE block on enc32x.

    x: [B, H, W, C] -> [B, H, W, C]. Steps, from the paper's description: compress channels 4x
    with a point-wise conv; extract multi-scale features depth-wise with one 3x3 atrous conv
    per rate; fuse the scales depth-wise (a per-channel weighted sum over rates); then a single
    point-wise inter-channel fusion; recover the channel count with a last point-wise conv.
    """

    rates: Sequence[int] = (1, 2, 4, 8)
    compression: int = 4
    use_running_average: bool = False
    axis_name: Optional[str] = None
    depthwise_impl: str = "auto"
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        mid = c // self.compression

        def ibn_conv(features, name):
            return ConvIBNormRelu(features, 1, use_running_average=self.use_running_average,
                                  axis_name=self.axis_name, dtype=self.dtype,
                                  fast_paths=self.fast_paths, name=name)

        h = ibn_conv(mid, "compress")(x)
        scales = [
            DepthwiseConv(3, 1, rate, impl=self.depthwise_impl, dtype=self.dtype,
                          name=f"atrous_{i}")(h)
            for i, rate in enumerate(self.rates)
        ]
        # Depth-wise multi-scale fusion: channel c of the output mixes channel c of each scale.
        mix = self.param("scale_fusion", nn.initializers.constant(1.0 / len(self.rates)),
                         (len(self.rates), mid), jnp.float32)
        h = sum(s * mix[i].astype(self.dtype) for i, s in enumerate(scales))
        h = ibn_conv(mid, "channel_fusion")(h)
        return ibn_conv(c, "recover")(h)


class LRBranch(nn.Module):
    """enc32x [B,H/32,W/32,1280] -> (pred_semantic [B,H/16,W/16,1] or None, lr8x [B,H/8,W/8,32])."""

    lr_branch: str = "se"
    easpp_rates: Sequence[int] = (1, 2, 4, 8)
    use_running_average: bool = False
    axis_name: Optional[str] = None
    depthwise_impl: str = "auto"
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, enc32x, inference: bool):
        ibn = dict(use_running_average=self.use_running_average, axis_name=self.axis_name,
                   dtype=self.dtype, fast_paths=self.fast_paths)
        if self.lr_branch == "se":
            x = SEBlock(4, self.dtype, name="se_block")(enc32x)
        else:
            x = EASPP(self.easpp_rates, 4, self.use_running_average, self.axis_name,
                      self.depthwise_impl, self.dtype, self.fast_paths, name="easpp")(enc32x)
        x = ConvIBNormRelu(96, 5, **ibn, upsample_input=True, name="conv_lr16x")(x)
        lr8x = ConvIBNormRelu(32, 5, **ibn, upsample_input=True, name="conv_lr8x")(x)
        pred_semantic = None
        if not inference:
            lr = ConvIBNormRelu(1, 3, 2, with_ibn=False, with_relu=False, **ibn,
                                name="conv_lr")(lr8x)
            pred_semantic = nn.sigmoid(lr.astype(_out_dtype(lr)))
        return pred_semantic, lr8x


class HRBranch(nn.Module):
    """Detail branch. Returns (pred_detail [B,H,W,1] or None, hr2x [B,H/2,W/2,hr])."""

    hr_channels: int = 32
    use_running_average: bool = False
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, img, enc2x, enc4x, lr8x, inference: bool):
        hr = self.hr_channels
        ibn = dict(use_running_average=self.use_running_average, axis_name=self.axis_name,
                   dtype=self.dtype, fast_paths=self.fast_paths)

        def block(features, kernel, name, stride=1):
            return ConvIBNormRelu(features, kernel, stride, **ibn, name=name)

        # Concatenations are passed to the convs as tuples (torch.cat order); see Conv2d.
        img2x = downsample_bilinear(img, 2)
        img4x = downsample_bilinear(img, 4)

        e2 = block(hr, 1, "tohr_enc2x")(enc2x)
        hr4x = block(hr, 3, "conv_enc2x", stride=2)((img2x, e2))
        e4 = block(hr, 1, "tohr_enc4x")(enc4x)
        hr4x = block(2 * hr, 3, "conv_enc4x")((hr4x, e4))

        lr4x = Upsample2x()(lr8x)
        h = block(2 * hr, 3, "conv_hr4x_0")((hr4x, lr4x, img4x))
        h = block(2 * hr, 3, "conv_hr4x_1")(h)
        h = block(hr, 3, "conv_hr4x_2")(h)

        h = block(2 * hr, 3, "conv_hr2x_0")((Upsample2x()(h), e2))
        h = block(hr, 3, "conv_hr2x_1")(h)
        h = block(hr, 3, "conv_hr2x_2")(h)
        hr2x = block(hr, 3, "conv_hr2x_3")(h)

        pred_detail = None
        if not inference:
            h = block(hr, 3, "conv_hr_0")((Upsample2x()(hr2x), img))
            h = ConvIBNormRelu(1, 1, with_ibn=False, with_relu=False, **ibn,
                               name="conv_hr_1")(h)
            pred_detail = nn.sigmoid(h.astype(_out_dtype(h)))
        return pred_detail, hr2x


class FusionBranch(nn.Module):
    """(img, lr8x, hr2x) -> pred_matte [B, H, W, 1] in [0, 1]."""

    hr_channels: int = 32
    use_running_average: bool = False
    axis_name: Optional[str] = None
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"

    @nn.compact
    def __call__(self, img, lr8x, hr2x):
        hr = self.hr_channels
        ibn = dict(use_running_average=self.use_running_average, axis_name=self.axis_name,
                   dtype=self.dtype, fast_paths=self.fast_paths)
        lr4x = ConvIBNormRelu(hr, 5, **ibn, upsample_input=True, name="conv_lr4x")(lr8x)
        lr2x = Upsample2x()(lr4x)
        f2x = ConvIBNormRelu(hr, 3, **ibn, name="conv_f2x")((lr2x, hr2x))
        f = Upsample2x()(f2x)
        f = ConvIBNormRelu(hr // 2, 3, **ibn, name="conv_f_0")((f, img))
        f = ConvIBNormRelu(1, 1, with_ibn=False, with_relu=False, **ibn, name="conv_f_1")(f)
        return nn.sigmoid(f.astype(_out_dtype(f)))


class MODNet(nn.Module):
    """img: [B, H, W, 3] in [-1, 1] (H, W multiples of 32) ->
    (pred_semantic [B,H/16,W/16,1] | None, pred_detail [B,H,W,1] | None, pred_matte [B,H,W,1]),
    all float32 in [0, 1].

    Attributes:
      hr_channels: width of the detail/fusion branches (32 in the release).
      lr_branch: ``"se"`` (release) or ``"easpp"`` (the paper's e-ASPP).
      axis_name: pmap axis over which BatchNorm averages its statistics (None: no collective).
      depthwise_impl: ``"auto"`` | ``"xla"`` | ``"shifted"`` (same numbers, different speed).
      dtype: compute dtype (e.g. bfloat16); parameters and BN statistics stay float32.
      backbone_dtype: the MobileNetV2 encoder computes in the wider of this and ``dtype``
        (default float32: under bf16 only the heads, ~90% of the FLOPs, run in bf16). Why:
        several of the encoder's BatchNorms shrink their input's spread ~17x (the released
        weights' features.2 expansion: std 8.3 before, 0.49 after), so bf16's 0.4% rounding
        of their inputs becomes ~6% of the signal; with the whole model in bf16 the matte
        moved by 3.7/255 on average (up to 254/255 at some pixels) against 0.17/255 with an
        fp32 encoder (512x512 portrait, released weights). ``"bfloat16"``: all in bf16.
      fast_paths: ``"auto"`` | ``"on"`` | ``"off"``: the heads' fast implementations (split
        concat convs, conv_lr16x taps before upsampling, one-pass IBNorm; see
        ``models.layers``). Same variables and, up to fp32 summation order, same numbers;
        ``"auto"`` is on for the CPU backend.
    """

    hr_channels: int = 32
    lr_branch: str = "se"
    easpp_rates: Sequence[int] = (1, 2, 4, 8)
    axis_name: Optional[str] = None
    depthwise_impl: str = "auto"
    dtype: Dtype = jnp.float32
    fast_paths: str = "auto"
    backbone_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, img, train: bool = False, inference: bool = False,
                 freeze_bn: bool = False) -> Tuple[Optional[Any], Optional[Any], Any]:
        if self.lr_branch not in LR_BRANCHES:
            raise ValueError(f"lr_branch must be one of {LR_BRANCHES}, got {self.lr_branch!r}")
        check_spatial(img.shape)
        if img.shape[-1] != 3:
            raise ValueError(f"MODNet expects 3 input channels (RGB), got shape {img.shape}")
        ura = (not train) or freeze_bn
        img = img.astype(self.dtype)
        taps = MobileNetV2(ura, self.axis_name, self.depthwise_impl,
                           jnp.promote_types(self.dtype, self.backbone_dtype), self.fast_paths,
                           name="backbone")(img)
        pred_semantic, lr8x = LRBranch(self.lr_branch, self.easpp_rates, ura, self.axis_name,
                                       self.depthwise_impl, self.dtype, self.fast_paths,
                                       name="lr_branch")(taps["enc32x"], inference)
        pred_detail, hr2x = HRBranch(self.hr_channels, ura, self.axis_name, self.dtype,
                                     self.fast_paths,
                                     name="hr_branch")(img, taps["enc2x"], taps["enc4x"], lr8x,
                                                       inference)
        pred_matte = FusionBranch(self.hr_channels, ura, self.axis_name, self.dtype,
                                  self.fast_paths, name="f_branch")(img, lr8x, hr2x)
        return pred_semantic, pred_detail, pred_matte
