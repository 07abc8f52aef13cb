"""Foreground estimation: ours (imaging/compositing.estimate_foreground) vs pymatting's
`estimate_foreground_ml` (Germer et al., multi-level), on synthetic composites whose true
foreground is known.

For each size and seed: a procedural portrait (fg, alpha) is composited onto a procedural
background; each method estimates fg from that image and the true alpha. Reported:

    band err    mean |fg_est - fg| (0..255 levels) over the soft band 25 < alpha < 230
    recomp err  mean |C(fg_est) - C(fg)| over pixels with alpha > 0, where C re-composites
                onto a *new* background with the true alpha (what the data pipeline does
                with the estimate: the error a training sample actually carries)
    ms          median wall time per image, one thread each (OpenCV and numba), after a
                warm-up call (pymatting's numba compile is excluded)

    pip install -e ".[bench]"      # pymatting (and numba)
    python -m benchmarks.foreground [--sizes 512,1024] [--seeds 4] [--repeats 3]

Results and the decision: benchmarks/RESULTS.md ("Foreground estimation").
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from modnet_jax.data.synthetic import generate_background, generate_portrait  # noqa: E402
from modnet_jax.imaging.compositing import composite, estimate_foreground  # noqa: E402


def pymatting_fg(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    from pymatting import estimate_foreground_ml

    fg = estimate_foreground_ml(image.astype(np.float64) / 255.0, alpha.astype(np.float64) / 255.0)
    return np.clip(np.rint(fg * 255.0), 0, 255).astype(np.uint8)


METHODS = {"ours": estimate_foreground, "pymatting ml": pymatting_fg}


def errors(estimate, fg, alpha, new_bg):
    band = (alpha > 25) & (alpha < 230)
    band_err = np.abs(estimate.astype(np.int32) - fg)[band].mean()
    seen = alpha > 0
    recomp = np.abs(composite(estimate, new_bg, alpha).astype(np.int32)
                    - composite(fg, new_bg, alpha))[seen].mean()
    return float(band_err), float(recomp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    warm = generate_portrait(0, 0, 64)
    for method in METHODS.values():  # numba compiles on the first call
        method(composite(warm["fg"], generate_background(0, 0, 64), warm["alpha"]), warm["alpha"])
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average)")
    print(f"{'size':>6} {'method':<14}{'band err':>10}{'recomp err':>12}{'ms':>10}"
          f"{'photo as fg: band / recomp':>30}")
    for size in (int(s) for s in args.sizes.split(",")):
        results = {name: ([], [], []) for name in METHODS}
        baseline = ([], [])
        for seed in range(args.seeds):
            sample = generate_portrait(seed, 7, size)
            fg, alpha = sample["fg"], sample["alpha"]
            image = composite(fg, generate_background(seed, 7, size), alpha)
            new_bg = generate_background(seed + 1000, 3, size)
            for name, method in METHODS.items():
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    estimate = method(image, alpha)
                    times.append(time.perf_counter() - start)
                band_err, recomp = errors(estimate, fg, alpha, new_bg)
                results[name][0].append(band_err)
                results[name][1].append(recomp)
                results[name][2].append(statistics.median(times) * 1e3)
            for values, err in zip(baseline, errors(image, fg, alpha, new_bg)):
                values.append(err)
        for name, (band, recomp, ms) in results.items():
            print(f"{size:>6} {name:<14}{np.mean(band):>10.2f}{np.mean(recomp):>12.3f}"
                  f"{np.median(ms):>10.1f}{np.mean(baseline[0]):>19.2f} / "
                  f"{np.mean(baseline[1]):.3f}")


if __name__ == "__main__":
    main()
