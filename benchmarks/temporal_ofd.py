"""One-Frame Delay on vs off: temporal metrics on a synthetic moving-portrait clip.

    python -m benchmarks.temporal_ofd --checkpoint workdir/supervised_quick [--frames 60]
    python -m benchmarks.temporal_ofd --onnx modnet_photographic_portrait_matting.onnx

The clip: one synthetic portrait (``modnet_jax.data.synthetic``) composited over a static
synthetic background; the subject sways sideways (sub-pixel shifts), holds still for a third of
the clip, then sways again, so the flicker score (which only looks where the input did not
change) sees both the still background and the still subject. The ground-truth matte of every
frame is the shifted alpha, so MSE/MAD, dtSSD and MESSDdt are exact.

The clip runs through ``MattingEngine.video`` with One-Frame Delay off and on; the table scores
both, and the raw mattes with and without host-side OFD after injected flicker (``--spikes``: a fraction of pixels of each matte replaced by
1 - alpha on that frame only), which OFD is designed to remove. Scores use 8-bit mattes, as
``evaluate`` does by default. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

from modnet_jax import metrics  # noqa: E402
from modnet_jax.data.synthetic import generate_background, generate_portrait  # noqa: E402
from modnet_jax.temporal import OneFrameDelay  # noqa: E402
from modnet_jax.temporal import flicker_score, temporal_metrics  # noqa: E402


def moving_portrait_clip(frames: int, height: int, width: int, seed: int = 0, sway: float = 0.06):
    """(RGB uint8 frames, float ground-truth mattes): sway, hold still, sway."""
    person = generate_portrait(seed, 0, height, width)
    bg = generate_background(seed, 0, height, width, avoid=person["clothes_colour"]).astype(
        np.float32)
    fg = person["fg"].astype(np.float32)
    alpha = person["alpha"].astype(np.float32) / 255.0
    hold = range(frames // 3, 2 * frames // 3)
    rgb, gts = [], []
    phase = 0.0
    for t in range(frames):
        if t not in hold:
            phase += 2 * np.pi / 24  # one sway every 24 moving frames
        dx = sway * width * np.sin(phase)
        dy = 0.01 * height * np.sin(0.5 * phase)
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        a = cv2.warpAffine(alpha, shift, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        f = cv2.warpAffine(fg, shift, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        image = f * a[..., None] + bg * (1.0 - a[..., None])
        rgb.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        gts.append(metrics.quantize_8bit(a))
    return rgb, gts


def with_ofd(mattes):
    stream = OneFrameDelay()
    out = [m for a in mattes for m, _ in stream.push(a)]
    return out + [m for m, _ in stream.flush()]


def inject_spikes(mattes, fraction: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    out = []
    for a in mattes:
        a = a.copy()
        spikes = rng.random(a.shape) < fraction
        a[spikes] = 1.0 - a[spikes]
        out.append(a)
    return out


def score(frames, mattes, gts) -> dict:
    mattes = [metrics.quantize_8bit(m) for m in mattes]
    out = temporal_metrics(mattes, gts)
    out["flicker"] = flicker_score(frames, mattes)
    return out


def load_engine(args):
    from modnet_jax.inference.engine import MattingEngine
    if args.onnx:
        from modnet_jax.interop.onnx_import import load_onnx_variables
        from modnet_jax.models import model_from_config
        variables, model_cfg = load_onnx_variables(args.onnx)
        return MattingEngine(model_from_config(model_cfg), variables, ref_size=args.ref_size,
                             batch_size=args.batch_size)
    return MattingEngine.from_checkpoint(args.checkpoint, ref_size=args.ref_size,
                                         batch_size=args.batch_size)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a modnet_jax checkpoint")
    src.add_argument("--onnx", help="the released ONNX weights (needs the onnx package)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--ref-size", type=int, default=512,
                   help="the release's resize rule reference (default: %(default)s, as the "
                        "release)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spikes", type=float, default=0.01,
                   help="fraction of pixels flipped per frame in the injected-flicker rows")
    args = p.parse_args(argv)

    frames, gts = moving_portrait_clip(args.frames, args.height, args.width, args.seed)
    engine = load_engine(args)
    start = time.perf_counter()
    raw = [r.matte for r in engine.video(frames, ofd=False)]
    seconds = time.perf_counter() - start
    smoothed = [r.matte for r in engine.video(frames, ofd=True)]  # OFD on the device
    rows = [("model", "off", score(frames, raw, gts)),
            ("model", "on", score(frames, smoothed, gts))]
    spiky = inject_spikes(raw, args.spikes)
    rows += [(f"model + {args.spikes:.0%} injected flicker", "off", score(frames, spiky, gts)),
             (f"model + {args.spikes:.0%} injected flicker", "on",
              score(frames, with_ofd(spiky), gts))]

    source = args.onnx or args.checkpoint
    print(f"clip: {args.frames} frames {args.height}x{args.width} (sway, hold still, sway), "
          f"seed {args.seed}; model {source}, ref size {args.ref_size}; "
          f"{seconds:.1f} s to matte; load {os.getloadavg()[0]:.1f}")
    print()
    print("| mattes | OFD | MSE x1e3 | MAD x1e3 | dtSSD | MESSDdt | flicker x1e3 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, ofd, s in rows:
        print(f"| {name} | {ofd} | {1e3 * s['mse']:.3f} | {1e3 * s['mad']:.3f} | "
              f"{s['dtssd']:.3f} | {s['messddt']:.3f} | {1e3 * s['flicker']:.3f} |")
    print()
    print("8-bit mattes. dtSSD: 100 sqrt(mean squared error of the frame-to-frame change), "
          "MESSDdt: 1e4 mean |change of the squared error along the ground truth's optical "
          "flow|, both averaged over frame pairs; flicker: mean |a_t - a_(t-1)| where the input "
          "did not change (no ground truth needed).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
