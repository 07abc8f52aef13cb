"""An independent PyTorch MODNet: the referee for the JAX port and for interop.

Written from docs/architecture.md only (it imports nothing from ``modnet_jax``), with the
release's module names, so that its ``state_dict`` has the release's 751 keys. Benchmarks import
it to time PyTorch against JAX::

    from tests.torch_reference import ReferenceMODNet, channels_last
    net = channels_last(ReferenceMODNet().eval())
    semantic, detail, matte = net(img_nchw, inference=False)

It runs in ``torch.channels_last`` as well as in the default layout (no ``.view`` /
``.contiguous()`` on feature maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# MobileNetV2 blocks 1..17 as in the facts' table: (in, hidden, out, stride).
MOBILENET_BLOCKS = (
    [(32, 32, 16, 1), (16, 96, 24, 2), (24, 144, 24, 1), (24, 144, 32, 2)]
    + [(32, 192, 32, 1)] * 2 + [(32, 192, 64, 2)] + [(64, 384, 64, 1)] * 3
    + [(64, 384, 96, 1)] + [(96, 576, 96, 1)] * 2 + [(96, 576, 160, 2)]
    + [(160, 960, 160, 1)] * 2 + [(160, 960, 320, 1)]
)


def _resize(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _bn_conv(c_in, c_out, k=1, stride=1, groups=1, relu6=True):
    """[conv (no bias), BN, (ReLU6)] as a flat list for a Sequential."""
    mods = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out)]
    return mods + [nn.ReLU6()] if relu6 else mods


class _Block(nn.Module):
    def __init__(self, c_in, hidden, c_out, stride):
        super().__init__()
        layers = [] if hidden == c_in else _bn_conv(c_in, hidden)
        layers += _bn_conv(hidden, hidden, 3, stride, groups=hidden)
        layers += _bn_conv(hidden, c_out, relu6=False)
        self.conv = nn.Sequential(*layers)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.skip else y


class _Holder(nn.Module):
    """Gives the key level ``model`` (``backbone.model.features.N``)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Module()
        self.model.features = nn.Sequential(
            nn.Sequential(*_bn_conv(3, 32, 3, 2)),
            *[_Block(*spec) for spec in MOBILENET_BLOCKS],
            nn.Sequential(*_bn_conv(320, 1280)),
        )


class _IBN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.half = c // 2
        self.bnorm = nn.BatchNorm2d(self.half)
        self.inorm = nn.InstanceNorm2d(c - self.half)

    def forward(self, x):
        return torch.cat((self.bnorm(x[:, :self.half]), self.inorm(x[:, self.half:])), 1)


class _CBR(nn.Module):
    """``layers.0`` conv with bias, ``layers.1`` IBNorm, ``layers.2`` ReLU (last two optional)."""

    def __init__(self, c_in, c_out, k, stride=1, plain=False):
        super().__init__()
        conv = nn.Conv2d(c_in, c_out, k, stride, k // 2)
        self.layers = nn.Sequential(conv) if plain else nn.Sequential(conv, _IBN(c_out), nn.ReLU())

    def forward(self, x):
        return self.layers(x)


def _ns(**children):
    holder = nn.Module()
    for name, child in children.items():
        setattr(holder, name, child)
    return holder


class ReferenceMODNet(nn.Module):
    """``forward(img [B,3,H,W] in [-1,1], inference)`` -> (semantic, detail, matte).

    semantic [B,1,H/16,W/16] and detail [B,1,H,W] are None when ``inference`` is True.
    """

    def __init__(self):
        super().__init__()
        hr = 32
        self.backbone = _Holder()
        se = nn.Module()
        se.fc = nn.Sequential(nn.Linear(1280, 320, bias=False), nn.ReLU(),
                              nn.Linear(320, 1280, bias=False), nn.Sigmoid())
        self.lr_branch = _ns(backbone=self.backbone, se_block=se,
                             conv_lr16x=_CBR(1280, 96, 5), conv_lr8x=_CBR(96, 32, 5),
                             conv_lr=_CBR(32, 1, 3, 2, plain=True))
        self.hr_branch = _ns(
            tohr_enc2x=_CBR(16, hr, 1), conv_enc2x=_CBR(hr + 3, hr, 3, 2),
            tohr_enc4x=_CBR(24, hr, 1), conv_enc4x=_CBR(2 * hr, 2 * hr, 3),
            conv_hr4x=nn.Sequential(_CBR(3 * hr + 3, 2 * hr, 3), _CBR(2 * hr, 2 * hr, 3),
                                    _CBR(2 * hr, hr, 3)),
            conv_hr2x=nn.Sequential(_CBR(2 * hr, 2 * hr, 3), _CBR(2 * hr, hr, 3),
                                    _CBR(hr, hr, 3), _CBR(hr, hr, 3)),
            conv_hr=nn.Sequential(_CBR(hr + 3, hr, 3), _CBR(hr, 1, 1, plain=True)))
        self.f_branch = _ns(
            conv_lr4x=_CBR(32, hr, 5), conv_f2x=_CBR(2 * hr, hr, 3),
            conv_f=nn.Sequential(_CBR(hr + 3, hr // 2, 3), _CBR(hr // 2, 1, 1, plain=True)))

    def forward(self, img, inference=False):
        lr, hr, fb = self.lr_branch, self.hr_branch, self.f_branch
        x, taps = img, []
        for layer in self.backbone.model.features:
            x = layer(x)
            taps.append(x)
        enc2x, enc4x = taps[1], taps[3]
        w = lr.se_block.fc(x.mean(dim=(2, 3)))
        x = x * w[:, :, None, None]
        lr8x = lr.conv_lr8x(_resize(lr.conv_lr16x(_resize(x, 2)), 2))
        semantic = None if inference else torch.sigmoid(lr.conv_lr(lr8x))

        e2 = hr.tohr_enc2x(enc2x)
        h = hr.conv_enc2x(torch.cat((_resize(img, 0.5), e2), 1))
        h = hr.conv_enc4x(torch.cat((h, hr.tohr_enc4x(enc4x)), 1))
        h = hr.conv_hr4x(torch.cat((h, _resize(lr8x, 2), _resize(img, 0.25)), 1))
        hr2x = hr.conv_hr2x(torch.cat((_resize(h, 2), e2), 1))
        detail = None
        if not inference:
            detail = torch.sigmoid(hr.conv_hr(torch.cat((_resize(hr2x, 2), img), 1)))

        f = _resize(fb.conv_lr4x(_resize(lr8x, 2)), 2)
        f = _resize(fb.conv_f2x(torch.cat((f, hr2x), 1)), 2)
        return semantic, detail, torch.sigmoid(fb.conv_f(torch.cat((f, img), 1)))


def channels_last(module):
    """The module with its weights in ``torch.channels_last`` (feed NHWC-strided inputs)."""
    return module.to(memory_format=torch.channels_last)


@torch.no_grad()
def randomize_(net, seed=0):
    """Random weights of a realistic scale, then BN running stats set to the batch statistics.

    Conv/Linear: uniform(+-sqrt(6/fan_in)); BN affine near (1, 0); biases small. The running
    statistics are then calibrated on one random batch (momentum 1 for one train-mode forward),
    so that eval mode is as well conditioned as a trained model's.
    """
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = (6.0 / (m.weight[0].numel())) ** 0.5
            m.weight.copy_((torch.rand(m.weight.shape, generator=g) * 2 - 1) * bound)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    calibrate_(net, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1)
    return net


@torch.no_grad()
def calibrate_(net, img):
    """Set every BN's running stats to its batch statistics on ``img`` (one train forward)."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = net.training
    for m in bns:
        m.momentum = 1.0
    net.train()(img, inference=False)
    for m in bns:
        m.momentum = 0.1
        m.num_batches_tracked.zero_()
    return net.train(was_training)
