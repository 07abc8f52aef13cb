"""Data pipeline throughput: composited 512x512 samples per second from ~1080p files.

Writes (once) a folder of 1920x1080 foregrounds (JPEG), mattes (PNG) and backgrounds (JPEG)
in the fg_alpha layout, with photo-like sensor noise so the JPEGs are as large as real
photos (decode time follows file size), then runs the training pipeline with 0, 1 and 2
worker processes and prints samples/s overall, per worker, and per CPU-second (CPU time of
this process and its workers, the per-core figure that survives a shared machine). With 0
workers one prefetch thread and one OpenCV thread are used, so that row is one core's worth.
A row for the procedural (synthetic) data follows, then a per-stage CPU timing of single
samples, to show where the time goes.

    python benchmarks/data_pipeline.py [--seconds 12] [--workers 0,1,2] [--count 24]
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from modnet_jax.data import (
    composite,
    generate_background,
    generate_portrait,
    make_train_iterator,
    make_trimap,
)
from modnet_jax.data import augment, images


def write_folder(root: str, count: int, height: int, width: int) -> None:
    """1080p fg (JPEG) + alpha (PNG) + bg (JPEG) files, with noise like a camera's."""
    for sub in ("fg", "alpha", "bg"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        stem = f"img_{index:04d}"
        sample = generate_portrait(7, index, height, width)
        bg = generate_background(7, index, height, width, avoid=sample["clothes_colour"])
        for sub, image in (("fg", sample["fg"]), ("bg", bg)):
            noisy = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(os.path.join(root, sub, stem + ".jpg"), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
        cv2.imwrite(os.path.join(root, "alpha", stem + ".png"), sample["alpha"])


def _cpu_seconds() -> float:
    """CPU time of this process and all its live descendants (Linux /proc; else own only).

    Samples per CPU-second is the per-core figure that stays meaningful when other jobs
    share the machine, where wall-clock rates fall with the load.
    """
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    pending = [os.getpid()]
    while pending:
        pid = pending.pop()
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    children = [int(c) for c in handle.read().split()]
                for child in children:
                    with open(f"/proc/{child}/stat") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                    pending.append(child)
        except OSError:
            continue
    return total


def measure(cfg: dict, workers: int, seconds: float, batch_size: int, image_size: int):
    """(samples per wall-clock second, samples per CPU-second) over `seconds`."""
    cfg = dict(cfg, num_workers=workers, read_threads=1 if workers == 0 else 2)
    iterator = make_train_iterator(cfg, batch_size=batch_size, seed=0, image_size=image_size)
    for _ in range(2):  # warm-up: worker start-up and first decodes
        next(iterator)
    samples, start, cpu_start = 0, time.perf_counter(), _cpu_seconds()
    while time.perf_counter() - start < seconds:
        batch = next(iterator)
        samples += batch["image"].shape[0]
    rate = samples / (time.perf_counter() - start)
    per_cpu = samples / max(1e-9, _cpu_seconds() - cpu_start)
    if hasattr(iterator, "close"):
        iterator.close()
    del iterator
    return rate, per_cpu


def stage_times(root: str, image_size: int, repeats: int) -> dict:
    """CPU milliseconds per stage of one composited sample, single-threaded."""
    names = sorted(os.listdir(os.path.join(root, "fg")))[:repeats]
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}

    def timed(stage, fn, *args):
        start = time.thread_time()  # CPU time: unaffected by other jobs on the machine
        out = fn(*args)
        totals[stage] = totals.get(stage, 0.0) + (time.thread_time() - start) * 1000
        return out

    for name in names:
        stem = os.path.splitext(name)[0]
        fg = timed("decode fg JPEG", images.decode_rgb, os.path.join(root, "fg", name))
        alpha = timed("decode alpha PNG", images.decode_alpha, os.path.join(root, "alpha", stem + ".png"))
        bg = timed("decode bg JPEG (1/2 size)", images.decode_rgb, os.path.join(root, "bg", name), 2)
        window = augment.random_window(*alpha.shape, rng, (1.0, 1.5), alpha, 0.8)
        fg = timed("crop+resize fg, alpha", augment.crop_resize, fg, window, image_size)
        alpha = timed("crop+resize fg, alpha", augment.crop_resize, alpha, window, image_size)
        bg_window = augment.random_window(*bg.shape[:2], rng, (1.0, 1.5))
        bg = timed("crop+resize bg", augment.crop_resize, bg, bg_window, image_size)
        fg = timed("colour jitter", augment.colour_jitter, fg, rng, augment.JitterRanges())
        timed("composite", composite, fg, bg, alpha)
        timed("trimap", make_trimap, alpha, 15)
    return {stage: total / len(names) for stage, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/modnet_jax_bench_1080p")
    parser.add_argument("--count", type=int, default=24, help="files written (1080p)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0, help="timed seconds per row")
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args()

    marker = os.path.join(args.data_dir, f".complete_{args.count}")
    if not os.path.exists(marker):
        start = time.perf_counter()
        write_folder(args.data_dir, args.count, 1080, 1920)
        open(marker, "w").close()
        print(f"wrote {args.count} 1920x1080 samples to {args.data_dir} "
              f"in {time.perf_counter() - start:.1f}s")
    sizes = {sub: np.mean([os.path.getsize(os.path.join(args.data_dir, sub, f))
                           for f in os.listdir(os.path.join(args.data_dir, sub))]) / 1024
             for sub in ("fg", "alpha", "bg")}
    print("mean file size: " + ", ".join(f"{k} {v:.0f} KiB" for k, v in sizes.items()))
    print(f"CPU cores: {os.cpu_count()}")

    cv2.setNumThreads(1)  # the 0-worker row is one core's worth of work
    cfg = dict(layout="fg_alpha", root=args.data_dir, bg_root=os.path.join(args.data_dir, "bg"),
               val_fraction=0.0)
    print(f"\ncomposited {args.image_size}x{args.image_size} samples from 1080p files "
          f"(batch {args.batch_size}, {args.seconds:.0f}s per row)")
    print(f"{'workers':>10} | {'samples/s':>10} | {'per worker':>10} | {'per CPU-second':>14}")
    print("-" * 54)
    for workers in (int(w) for w in args.workers.split(",")):
        rate, per_cpu = measure(cfg, workers, args.seconds, args.batch_size, args.image_size)
        print(f"{workers:>10} | {rate:>10.1f} | {rate / max(1, workers):>10.1f} | {per_cpu:>14.1f}")
    rate, per_cpu = measure(dict(layout="synthetic", synthetic_size=512), 0, args.seconds / 2,
                            args.batch_size, args.image_size)
    print(f"{'synthetic':>10} | {rate:>10.1f} | {rate:>10.1f} | {per_cpu:>14.1f}   "
          "(procedural data, no files, 0 workers)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(1-minute load average at the end: {load:.1f}; samples/s fall when other jobs "
          "share the cores, samples per CPU-second much less so)")

    print("\nper-stage CPU cost of one sample (ms, one thread):")
    stages = stage_times(args.data_dir, args.image_size, min(args.count, 12))
    for stage, ms in stages.items():
        print(f"  {stage:<28} {ms:7.2f}")
    print(f"  {'total':<28} {sum(stages.values()):7.2f}  (= {1000 / sum(stages.values()):.0f} samples/s per core)")


if __name__ == "__main__":  # required: Grain worker processes re-import this module
    main()
