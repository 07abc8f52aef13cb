"""Does training with the device stage learn as well as with the host recipe?

Trains the `quick` supervised variant (embedded synthetic portraits, Adam 1e-3, batch 8) for
`--steps` steps with each seed, once with the host path and once with
`data.augment_on_device=true`, and prints the validation MAD (centre crops, the in-training
`val_crop` evaluation over the held-out split) of every run, with the mean and standard
deviation per path. The two paths draw the same numbers (data/recipe.py), so a seed's two
runs see the same crops, flips, jitters and backgrounds; their batches differ only by the
device stage's rounding. Results are recorded in benchmarks/RESULTS.md.

    python -m benchmarks.device_stage_training [--steps 100] [--seeds 0,1,2] [--image-size 96]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from modnet_jax.configs.supervised import get_config
from modnet_jax.training.loop import train


def run(seed: int, device: bool, steps: int, image_size: int) -> float:
    config = get_config("quick")
    config.num_train_steps = steps
    config.seed = seed
    config.image_size = image_size
    config.progress = False
    config.eval_at_start = False
    config.checkpoint_every = steps
    config.keep_checkpoints = 1
    config.num_devices = 1
    config.data.augment_on_device = device
    with tempfile.TemporaryDirectory() as workdir:
        return float(train(config, workdir)["val_crop_after"]["mad"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    print(f"quick variant, {args.steps} steps at {args.image_size}x{args.image_size}, "
          f"validation MAD (val_crop) per seed")
    print(f"{'path':>12} | " + " | ".join(f"seed {s:>3}" for s in seeds) + " |   mean |    std")
    for name, device in (("host", False), ("device", True)):
        start = time.perf_counter()
        values = results[name] = []
        for seed in seeds:  # each result as it comes: a run can take many minutes on a CPU
            values.append(run(seed, device, args.steps, args.image_size))
            print(f"  {name} seed {seed}: {values[-1]:.4f}", flush=True)
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"{name:>12} | " + " | ".join(f"{v:8.4f}" for v in values)
              + f" | {statistics.mean(values):.4f} | {spread:.4f}"
              f"  ({time.perf_counter() - start:.0f}s)", flush=True)
    gaps = [d - h for h, d in zip(results["host"], results["device"])]
    print(f"device - host per seed: {', '.join(f'{g:+.4f}' for g in gaps)}")


if __name__ == "__main__":
    main()
