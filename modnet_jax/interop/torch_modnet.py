"""MODNet as a PyTorch ``nn.Module`` with the release's module names (needs torch).

Used to strict-load converted weights (``state_dict`` keys identical to the official model:
``backbone.model.features.*``, its alias ``lr_branch.backbone.model.features.*``,
``lr_branch.se_block.fc.*``, ``*.layers.0`` / ``*.layers.1.bnorm``) and to export ONNX. The
numerics follow docs/architecture.md: NCHW, input in [-1, 1], H and W multiples of 32, every
resize bilinear with ``align_corners=False``. Import this module only when torch is installed
(``modnet_jax.interop.torch_io.require_torch`` says how to install it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modnet_jax.interop.keys import ENC_CHANNELS, HR_CHANNELS
from modnet_jax.models.mobilenetv2 import LAST_CHANNELS, STEM_CHANNELS, block_specs


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _down(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=1.0 / factor, mode="bilinear", align_corners=False)


class InvertedResidual(nn.Module):
    """MobileNetV2 block; children ``conv.J`` numbered like the release's Sequential."""

    def __init__(self, c_in: int, hidden: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        dw = [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
              nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        project = [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        expand = [] if expansion == 1 else [
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        self.conv = nn.Sequential(*expand, *dw, *project)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` 0..18 of MobileNetV2 (width 1.0, no classifier)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(in_channels, STEM_CHANNELS, 3, 2, 1, bias=False),
                             nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU6(inplace=True))
        blocks = [InvertedResidual(*spec) for spec in block_specs()]
        last_in = block_specs()[-1][2]
        head = nn.Sequential(nn.Conv2d(last_in, LAST_CHANNELS, 1, bias=False),
                             nn.BatchNorm2d(LAST_CHANNELS), nn.ReLU6(inplace=True))
        self.features = nn.Sequential(stem, *blocks, head)


class MobileNetV2Backbone(nn.Module):
    """Wrapper holding ``model``; returns the taps (enc2x, enc4x, enc32x)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.model = MobileNetV2(in_channels)
        self.enc_channels = list(ENC_CHANNELS)

    def forward(self, x):
        taps = {}
        for idx, layer in enumerate(self.model.features):
            x = layer(x)
            if idx in (1, 3):
                taps[idx] = x
        return taps[1], taps[3], x


class IBNorm(nn.Module):
    """BatchNorm on channels [0, C/2), InstanceNorm (no affine) on the rest, concatenated."""

    def __init__(self, channels: int):
        super().__init__()
        self.split = channels // 2
        self.bnorm = nn.BatchNorm2d(self.split, affine=True)
        self.inorm = nn.InstanceNorm2d(channels - self.split, affine=False)

    def forward(self, x):
        return torch.cat([self.bnorm(x[:, :self.split]), self.inorm(x[:, self.split:])], dim=1)


class Conv2dIBNormRelu(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 with_ibn: bool = True, with_relu: bool = True):
        super().__init__()
        layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=True)]
        if with_ibn:
            layers.append(IBNorm(c_out))
        if with_relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False),
                                nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False),
                                nn.Sigmoid())

    def forward(self, x):
        w = self.fc(torch.flatten(self.pool(x), 1))
        return x * w[:, :, None, None]


class LRBranch(nn.Module):
    def __init__(self, backbone: MobileNetV2Backbone):
        super().__init__()
        _, _, e8, e16, e32 = ENC_CHANNELS
        self.backbone = backbone  # the same module as MODNet.backbone (aliased keys)
        self.se_block = SEBlock(e32, 4)
        self.conv_lr16x = Conv2dIBNormRelu(e32, e16, 5)
        self.conv_lr8x = Conv2dIBNormRelu(e16, e8, 5)
        self.conv_lr = Conv2dIBNormRelu(e8, 1, 3, 2, with_ibn=False, with_relu=False)

    def forward(self, img, inference: bool):
        enc2x, enc4x, enc32x = self.backbone(img)
        lr8x = self.conv_lr8x(_up2(self.conv_lr16x(_up2(self.se_block(enc32x)))))
        semantic = None if inference else torch.sigmoid(self.conv_lr(lr8x))
        return semantic, lr8x, enc2x, enc4x


class HRBranch(nn.Module):
    def __init__(self, hr: int):
        super().__init__()
        e2, e4 = ENC_CHANNELS[:2]
        self.tohr_enc2x = Conv2dIBNormRelu(e2, hr, 1)
        self.conv_enc2x = Conv2dIBNormRelu(hr + 3, hr, 3, stride=2)
        self.tohr_enc4x = Conv2dIBNormRelu(e4, hr, 1)
        self.conv_enc4x = Conv2dIBNormRelu(2 * hr, 2 * hr, 3)
        self.conv_hr4x = nn.Sequential(Conv2dIBNormRelu(3 * hr + 3, 2 * hr, 3),
                                       Conv2dIBNormRelu(2 * hr, 2 * hr, 3),
                                       Conv2dIBNormRelu(2 * hr, hr, 3))
        self.conv_hr2x = nn.Sequential(Conv2dIBNormRelu(2 * hr, 2 * hr, 3),
                                       Conv2dIBNormRelu(2 * hr, hr, 3),
                                       Conv2dIBNormRelu(hr, hr, 3),
                                       Conv2dIBNormRelu(hr, hr, 3))
        self.conv_hr = nn.Sequential(Conv2dIBNormRelu(hr + 3, hr, 3),
                                     Conv2dIBNormRelu(hr, 1, 1, with_ibn=False, with_relu=False))

    def forward(self, img, enc2x, enc4x, lr8x, inference: bool):
        e2 = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat([_down(img, 2), e2], 1))
        hr4x = self.conv_enc4x(torch.cat([hr4x, self.tohr_enc4x(enc4x)], 1))
        hr4x = self.conv_hr4x(torch.cat([hr4x, _up2(lr8x), _down(img, 4)], 1))
        hr2x = self.conv_hr2x(torch.cat([_up2(hr4x), e2], 1))
        detail = None
        if not inference:
            detail = torch.sigmoid(self.conv_hr(torch.cat([_up2(hr2x), img], 1)))
        return detail, hr2x


class FusionBranch(nn.Module):
    def __init__(self, hr: int):
        super().__init__()
        self.conv_lr4x = Conv2dIBNormRelu(ENC_CHANNELS[2], hr, 5)
        self.conv_f2x = Conv2dIBNormRelu(2 * hr, hr, 3)
        self.conv_f = nn.Sequential(Conv2dIBNormRelu(hr + 3, hr // 2, 3),
                                    Conv2dIBNormRelu(hr // 2, 1, 1, with_ibn=False,
                                                     with_relu=False))

    def forward(self, img, lr8x, hr2x):
        lr2x = _up2(self.conv_lr4x(_up2(lr8x)))
        f = _up2(self.conv_f2x(torch.cat([lr2x, hr2x], 1)))
        return torch.sigmoid(self.conv_f(torch.cat([f, img], 1)))


class MODNet(nn.Module):
    """``forward(img [B,3,H,W], inference=False)`` -> (semantic | None, detail | None, matte)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.backbone = MobileNetV2Backbone(in_channels)
        self.lr_branch = LRBranch(self.backbone)
        self.hr_branch = HRBranch(HR_CHANNELS)
        self.f_branch = FusionBranch(HR_CHANNELS)

    def forward(self, img, inference: bool = False):
        semantic, lr8x, enc2x, enc4x = self.lr_branch(img, inference)
        detail, hr2x = self.hr_branch(img, enc2x, enc4x, lr8x, inference)
        return semantic, detail, self.f_branch(img, lr8x, hr2x)


class MatteOnly(nn.Module):
    """The inference graph exported to ONNX: ``img -> matte`` (training heads skipped)."""

    def __init__(self, modnet: MODNet):
        super().__init__()
        self.modnet = modnet

    def forward(self, img):
        return self.modnet(img, inference=True)[2]
