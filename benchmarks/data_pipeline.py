"""Data pipeline throughput: composited 512x512 samples per second from real image files.

Writes (once) folders of 1920x1080 and 3840x2160 foregrounds (JPEG), mattes (PNG) and
backgrounds (JPEG) in the fg_alpha layout, with photo-like sensor noise so the JPEGs are as
large as real photos (decode time follows file size), and a prepared copy of the 1080p
folder (`python -m modnet_jax.data.prepare`, short side 768 = 1.5 x 512). Then it runs the
training pipeline on each and prints samples/s overall, per worker, and per CPU-second (CPU
time of this process and its workers, the per-core figure that survives a shared machine).
With 0 workers one prefetch thread and one OpenCV thread are used, so that row is one
core's worth. Rows:

    1080p, full decode      reduced_decoding=False: every file decoded at full size
    1080p                   the default: reduced JPEG decoding where lossless for the crop
                            (a 1080p source at image_size 512 and zoom up to 1.5 needs its
                            full resolution, so this equals the row above)
    2160p, full decode      4K sources, reduced_decoding=False
    2160p                   4K sources: fg, matte and bg decoded at 1/2 size
    prepared 768            the prepared copy of the 1080p folder
    raw 768                 the same copy written with `prepare --format raw` (.npy arrays,
                            memory-mapped: no decoding)
    ... + fg cache          `sample_cache_mb` large enough for the whole fg set: after the
                            first epoch no fg/matte is decoded (steady state; warm-up runs four
                            epochs per worker before timing, as each worker fills its own cache)
    ... + fg+bg cache       `bg_cache_mb` too (only realistic for a small background set)
    ..., no malloc tuning   `malloc_tuning=False` (glibc default: image buffers re-faulted;
                            1 worker, a fresh process: the earlier rows tuned this one)
    synthetic               procedural data, no files
    arrayrecord 768         the same copy written with `prepare --format arrayrecord` and read
                            with data.layout=prepared (one ArrayRecord file of 64-px strips:
                            a crop reads the strips under its window)
    ..., device stage       data.augment_on_device=True: the host only decodes/reads, draws
                            and crops (uint8 crops of side <= precrop_size + the draws); resize,
                            flip, jitter, compositing and trimap run in the train step
    ..., precrop 1080       the device path with precrop_size=1080: 1080p crops cross
                            unresized (no host resize at all, 2x the bytes per sample)

A per-stage CPU timing of single samples follows, for the 1080p files, the prepared copy
and the raw copy with a warm fg cache, to show where the time goes. Results are recorded in
benchmarks/RESULTS.md ("Data pipeline").

Feeding an accelerator: after the rows, a summary gives, for each data path (JPEG files,
the prepared JPEG copy, the raw copy with and without the fg cache, the ArrayRecord copy),
samples/s per core before (host recipe) and after (device stage) at the chosen image size
(with workers where measured, else in-process), and how many cores each of
``--target-rates`` samples/s (a GPU's training step rate) needs before -> after:
ceil(target / per-core rate), plus one core for the training process itself (batch
hand-off, JAX dispatch). Then the device stage's own cost:
milliseconds per batch of the jitted `device_augment.augment_batch` on this machine's default
JAX backend (CPU here; run the script on a GPU host for the accelerator's figure), wall-clock
and in CPU time of this process (on a CPU backend, the figure that survives a shared
machine), with the host->device copy of the batch timed separately. `--rows none` runs only
this part.

Reduced JPEG decoding: for 12 of the 1080p foregrounds, CPU ms of a full and a 1/2-scale
(DCT-scaled) decode, and how far recipe crops made from the 1/2-scale decode are from the
recipe's crops of the full decode (mean, 99th percentile, max per-pixel difference).

    python -m benchmarks.data_pipeline [--seconds 12] [--workers 0,1,2] [--count 24] [--rows a,b]
        [--target-rates 1000,1800,2700] [--stage-batches 5] [--no-stages]
"""

from __future__ import annotations

import argparse
import math
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
from modnet_jax.data import augment, cache, pipeline, prepare, sources


def write_folder(root: str, count: int, height: int, width: int) -> None:
    """fg (JPEG) + alpha (PNG) + bg (JPEG) files, with noise like a camera's."""
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


def measure(cfg: dict, workers: int, seconds: float, batch_size: int, image_size: int,
            warm_samples: int = 0):
    """(samples per wall-clock second, samples per CPU-second) over `seconds`, after
    `warm_samples` (per worker: filling a cache) plus two batches of warm-up."""
    cfg = dict(cfg, num_workers=workers, read_threads=1 if workers == 0 else 2)
    iterator = make_train_iterator(cfg, batch_size=batch_size, seed=0, image_size=image_size)
    warm_batches = 2 + -(-warm_samples * max(1, workers) // batch_size)
    for _ in range(warm_batches):  # worker start-up, first decodes, cache filling
        next(iterator)
    samples, start, cpu_start = 0, time.perf_counter(), _cpu_seconds()
    while time.perf_counter() - start < seconds:
        batch = next(iterator)
        samples += len(batch["draws" if "draws" in batch else "image"])
    rate = samples / (time.perf_counter() - start)
    per_cpu = samples / max(1e-9, _cpu_seconds() - cpu_start)
    if hasattr(iterator, "close"):
        iterator.close()
    del iterator
    return rate, per_cpu


def stage_times(root: str, bg_root: str, image_size: int, repeats: int, min_side: int,
                fg_cache: bool = False) -> dict:
    """CPU milliseconds per stage of one composited sample, single-threaded, decoding as the
    pipeline does (`min_side`: its reduced-decoding threshold, 0 = full size); `fg_cache`:
    fg + matte come from a warm DecodedCache (crop+resize then runs on the packed array)."""
    pairs = sources.scan_pairs(os.path.join(root, "fg"), os.path.join(root, "alpha"), False)
    pairs = sources.ForegroundAlphaSource(pairs.entries[:repeats], min_side)
    if fg_cache:
        pairs = cache.DecodedCache(pairs, 2 ** 40)
        for index in range(len(pairs)):
            pairs[index]
    backgrounds = sources.BackgroundSource(sources.scan_images(bg_root, False).entries, min_side)
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}

    def timed(stage, fn, *args):
        start = time.thread_time()  # CPU time: unaffected by other jobs on the machine
        out = fn(*args)
        totals[stage] = totals.get(stage, 0.0) + (time.thread_time() - start) * 1000
        return out

    for index in range(len(pairs)):
        record = timed("read fg + alpha", pairs.__getitem__, index)
        fg, alpha = record["fg"], record["alpha"]
        bg = timed("read bg", backgrounds.__getitem__, index % len(backgrounds))
        window = augment.random_window(*alpha.shape, rng, (1.0, 1.5), alpha, 0.8)
        if cache.PACKED_KEY in record:
            both = timed("crop+resize fg, alpha", augment.crop_resize, record[cache.PACKED_KEY],
                         window, image_size)
            fg, alpha = timed("crop+resize fg, alpha", augment.split_colour_alpha, both)
        else:
            fg = timed("crop+resize fg, alpha", augment.crop_resize, fg, window, image_size)
            alpha = timed("crop+resize fg, alpha", augment.crop_resize, alpha, window, image_size)
        bg_window = augment.random_window(*bg.shape[:2], rng, (1.0, 1.5))
        bg = timed("crop+resize bg", augment.crop_resize, bg, bg_window, image_size)
        fg = timed("colour jitter", augment.colour_jitter, fg, rng, augment.JitterRanges())
        timed("composite", composite, fg, bg, alpha)
        timed("trimap", make_trimap, alpha, 15)
    return {stage: total / len(pairs) for stage, total in totals.items()}


def reduced_decode_check(paths, image_size: int, zoom_range=(1.0, 1.5), repeats: int = 4) -> None:
    """What decoding a JPEG at 1/2 scale (libjpeg's DCT scaling, IMREAD_REDUCED_COLOR_2)
    would save and change: CPU ms per decode at full and half scale, and for random windows
    of the recipe (zoom in `zoom_range`), the crop at `image_size` from the half-scale decode
    against the recipe's crop from the full decode (mean and max per-pixel difference, in
    levels), split by whether the half-scale crop still has >= image_size pixels (no
    enlarging: the only case where reduced decoding could be lossless for the recipe)."""
    rng = np.random.default_rng(0)
    full_ms = half_ms = 0.0
    errors = {True: [], False: []}
    for path in paths:
        data = np.fromfile(path, np.uint8)
        start = time.thread_time()
        full = cv2.imdecode(data, cv2.IMREAD_COLOR)
        full_ms += (time.thread_time() - start) * 1000
        start = time.thread_time()
        half = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_2)
        half_ms += (time.thread_time() - start) * 1000
        for _ in range(repeats):
            window = augment.random_window(*full.shape[:2], rng, zoom_range)
            ref = augment.crop_resize(full, window, image_size).astype(np.int16)
            small = augment.Window(window.y0 // 2, window.x0 // 2, max(1, window.side // 2))
            ours = augment.crop_resize(half, small, image_size).astype(np.int16)
            errors[small.side >= image_size].append(np.abs(ours - ref))
    count = len(paths)
    print(f"\nreduced JPEG decoding ({count} files, {full.shape[1]}x{full.shape[0]}): full "
          f"{full_ms / count:.1f} CPU-ms, 1/2 scale {half_ms / count:.1f} CPU-ms per decode")
    for lossless, diffs in errors.items():
        if diffs:
            stack = np.stack(diffs)
            what = "half-scale crop >= output" if lossless else "half-scale crop enlarged"
            print(f"  {what}: {len(diffs)} crops, |difference| to the recipe's mean "
                  f"{stack.mean():.2f}, 99th percentile {np.percentile(stack, 99):.0f}, "
                  f"max {stack.max()} levels")


def device_stage_cost(cfg: dict, batch_size: int, image_size: int, batches: int) -> None:
    """Milliseconds per batch of the device stage (jitted, default backend) and of the
    batch's host->device copy, on batches of the device path's iterator."""
    import jax

    from modnet_jax.device_augment import DeviceRecipe, augment_batch

    plan = pipeline.scan_split(cfg, image_size=image_size, split="train")
    iterator = make_train_iterator(cfg, batch_size=batch_size, seed=0, image_size=image_size,
                                   plan=plan)
    host = [next(iterator) for _ in range(batches + 1)]
    stage = jax.jit(lambda batch: augment_batch(batch, DeviceRecipe.from_options(plan.options)))
    on_device = [jax.device_put(batch) for batch in host]
    jax.block_until_ready(stage(on_device[0]))  # compile
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in on_device[1:]:
        jax.block_until_ready(stage(batch))
    stage_ms = (time.perf_counter() - start) / batches * 1000
    cpu_ms = (time.process_time() - cpu_start) / batches * 1000  # all of JAX's CPU threads
    start = time.perf_counter()
    for batch in host[1:]:
        jax.block_until_ready(jax.device_put(batch))
    copy_ms = (time.perf_counter() - start) / batches * 1000
    size = sum(v.nbytes for v in host[0].values()) / 2 ** 20
    print(f"\ndevice stage on {jax.devices()[0].device_kind} ({jax.default_backend()}): batch "
          f"{batch_size}, crops {host[0]['crop'].shape[1]} px -> {image_size} px: "
          f"{stage_ms:.1f} ms per batch ({stage_ms / batch_size:.2f} ms per sample), "
          f"{cpu_ms:.1f} CPU-ms per batch; "
          f"host->device copy of the batch ({size:.1f} MiB): {copy_ms:.1f} ms")


def ensure_folder(root: str, count: int, height: int, width: int) -> None:
    marker = os.path.join(root, f".complete_{count}")
    if not os.path.exists(marker):
        start = time.perf_counter()
        write_folder(root, count, height, width)
        open(marker, "w").close()
        print(f"wrote {count} {width}x{height} samples to {root} "
              f"in {time.perf_counter() - start:.1f}s")


def ensure_prepared(source: str, target: str, max_short_side: int, fmt: str = "encoded") -> None:
    from modnet_jax.data import records

    version = f"_v{records.FORMAT}" if fmt == "arrayrecord" else ""  # rewritten on a new format
    marker = os.path.join(target, f".complete_{max_short_side}{version}")
    if not os.path.exists(marker):
        start = time.perf_counter()
        pairs, _ = prepare.prepare("fg_alpha", source, target, max_short_side, fmt=fmt,
                                   overwrite=True)
        bgs, _ = prepare.prepare("images", os.path.join(source, "bg"), os.path.join(target, "bg"),
                                 max_short_side, fmt=fmt, overwrite=True)
        open(marker, "w").close()
        print(f"prepared {target}: {pairs.summary('pair')}; {bgs.summary('background')} "
              f"({time.perf_counter() - start:.1f}s)")


def mean_sizes(root: str) -> str:
    sizes = {sub: np.mean([os.path.getsize(os.path.join(root, sub, f))
                           for f in os.listdir(os.path.join(root, sub))]) / 1024
             for sub in ("fg", "alpha", "bg")}
    return ", ".join(f"{k} {v:.0f} KiB" for k, v in sizes.items())


# (label, host-recipe row, device-stage row) of the summary; "" = not measured that way
FEED_PATHS = (("JPEG files (1080p)", "1080p", "1080p, device stage"),
              ("JPEG files (1080p), precrop 1080", "", "1080p, device stage, precrop 1080"),
              ("prepared JPEG copy ({side})", "prepared {side}", ""),
              ("raw copy ({side})", "raw {side}", "raw {side}, device stage"),
              ("raw copy ({side}) + fg cache", "raw {side} + fg cache",
               "raw {side} + fg cache, device stage"),
              ("ArrayRecord copy ({side})", "arrayrecord {side}", "arrayrecord {side}, device stage"))


def cores_needed(target_rate: float, per_core: float) -> int:
    """Data cores for ``target_rate`` samples/s at ``per_core`` each, plus one for the
    training process (batch hand-off, JAX dispatch)."""
    return math.ceil(target_rate / per_core) + 1


def print_feeding(per_core: dict, side: int, image_size: int, targets) -> None:
    """Before (host recipe) and after (device stage) per data path: samples/s per core
    (per CPU-second; with workers when measured, how a GPU host runs the pipeline, else
    in-process) and the cores each target rate needs."""
    def rate(row):
        if not row:
            return None
        workers = [v for (name, count), v in per_core.items() if name == row and count > 0]
        return min(workers) if workers else per_core.get((row, 0))

    print(f"\nfeeding an accelerator: {image_size}x{image_size} samples per core (= per "
          f"CPU-second; with workers where measured), host recipe -> device stage, and the "
          f"cores a target rate needs")
    heads = "".join(f" | {f'cores @{t:,.0f}':>13}" for t in targets)
    print(f"{'data path':>34} | {'host recipe':>11} | {'device stage':>12}{heads}")
    print("-" * (64 + 16 * len(targets)))
    for label, before_row, after_row in FEED_PATHS:
        before = rate(before_row.format(side=side))
        after = rate(after_row.format(side=side))
        if before is None and after is None:
            continue
        cores = "".join(
            " | " + f"{' -> '.join(str(cores_needed(t, r)) for r in (before, after) if r):>13}"
            for t in targets)
        print(f"{label.format(side=side):>34} | {before or float('nan'):>11.1f} | "
              f"{after or float('nan'):>12.1f}{cores}")
    print("(cores = ceil(target / per-core rate) + 1 for the training process)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/modnet_jax_bench_1080p")
    parser.add_argument("--large-dir", default="/tmp/modnet_jax_bench_2160p")
    parser.add_argument("--prepared-dir", default="/tmp/modnet_jax_bench_1080p_prepared768")
    parser.add_argument("--raw-dir", default="/tmp/modnet_jax_bench_1080p_raw768")
    parser.add_argument("--records-dir", default="/tmp/modnet_jax_bench_1080p_records768")
    parser.add_argument("--stage-batches", type=int, default=5,
                        help="batches timed for the device stage's cost (0: skip)")
    parser.add_argument("--rows", default="",
                        help="comma-separated substrings: run only the rows whose name has one "
                             "(=NAME: exactly that row)")
    parser.add_argument("--count", type=int, default=24, help="files written (1080p)")
    parser.add_argument("--large-count", type=int, default=12, help="files written (2160p)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0, help="timed seconds per row")
    parser.add_argument("--workers", default="0,1,2",
                        help="worker counts for the 1080p and prepared rows")
    parser.add_argument("--target-rates", default="1000,1800,2700",
                        help="samples/s an accelerator consumes (its training step rate): the "
                             "summary says how many cores each data path needs for each")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage timing")
    args = parser.parse_args()

    max_side = int(np.ceil(args.image_size * 1.5))  # image_size x max(scale_range)
    wanted = args.rows.split(",") if args.rows else None
    needs_large = wanted is None or any("2160" in w for w in wanted)
    ensure_folder(args.data_dir, args.count, 1080, 1920)
    if needs_large:
        ensure_folder(args.large_dir, args.large_count, 2160, 3840)
    ensure_prepared(args.data_dir, args.prepared_dir, max_side)
    ensure_prepared(args.data_dir, args.raw_dir, max_side, "raw")
    ensure_prepared(args.data_dir, args.records_dir, max_side, "arrayrecord")
    for name, root in (("1080p", args.data_dir), ("2160p", args.large_dir),
                       ("prepared", args.prepared_dir), ("raw", args.raw_dir)):
        if root != args.large_dir or needs_large:
            print(f"mean file size, {name}: {mean_sizes(root)}")
    print(f"CPU cores: {os.cpu_count()}; load average at the start: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    cv2.setNumThreads(1)  # the 0-worker row is one core's worth of work
    workers = [int(w) for w in args.workers.split(",")]

    def files(root, **extra):
        return dict(layout="fg_alpha", root=root, bg_root=os.path.join(root, "bg"),
                    val_fraction=0.0, **extra)

    def records(**extra):
        return dict(layout="prepared", root=args.records_dir,
                    bg_root=os.path.join(args.records_dir, "bg"), val_fraction=0.0, **extra)

    device = dict(augment_on_device=True)
    fg_cache = dict(sample_cache_mb=4096)
    both_caches = dict(sample_cache_mb=4096, bg_cache_mb=4096)
    # Each worker fills its own cache from the samples it happens to build: four epochs per
    # worker leave few of the fg set unseen (measure() multiplies by the worker count).
    warm = 4 * args.count
    rows = [("1080p, full decode", files(args.data_dir, reduced_decoding=False), [0], 0),
            ("1080p", files(args.data_dir), workers, 0),
            ("1080p, no malloc tuning", files(args.data_dir, malloc_tuning=False), [1], 0),
            ("1080p + fg cache", files(args.data_dir, **fg_cache), workers, warm),
            ("1080p + fg+bg cache", files(args.data_dir, **both_caches), [0], warm),
            ("2160p, full decode", files(args.large_dir, reduced_decoding=False), [0], 0),
            ("2160p", files(args.large_dir), [0], 0),
            (f"prepared {max_side}", files(args.prepared_dir), workers, 0),
            (f"prepared {max_side} + fg cache", files(args.prepared_dir, **fg_cache), [0], warm),
            (f"raw {max_side}", files(args.raw_dir), workers, 0),
            (f"raw {max_side} + fg cache", files(args.raw_dir, **fg_cache), workers, warm),
            (f"raw {max_side} + fg cache, no malloc tuning",
             files(args.raw_dir, malloc_tuning=False, **fg_cache), [1], warm),
            ("synthetic", dict(layout="synthetic", synthetic_size=512), [0], 0),
            ("1080p, device stage", files(args.data_dir, **device), workers, 0),
            ("1080p, device stage, precrop 1080",
             files(args.data_dir, precrop_size=1080, **device), [0], 0),
            (f"raw {max_side}, device stage", files(args.raw_dir, **device), workers, 0),
            (f"raw {max_side} + fg cache, device stage", files(args.raw_dir, **fg_cache, **device),
             workers, warm),
            (f"arrayrecord {max_side}", records(), workers, 0),
            (f"arrayrecord {max_side}, device stage", records(**device), workers, 0)]
    if wanted:
        rows = [row for row in rows if any(row[0] == w[1:] if w.startswith("=") else w in row[0]
                                           for w in wanted)]
    print(f"\ncomposited {args.image_size}x{args.image_size} samples "
          f"(batch {args.batch_size}, {args.seconds:.0f}s per row)")
    print(f"{'data':>26} | {'workers':>7} | {'samples/s':>9} | {'per worker':>10} | "
          f"{'per CPU-second':>14}")
    print("-" * 80)
    per_core: dict[tuple[str, int], float] = {}
    for name, cfg, counts, warm_samples in rows:
        for count in counts:
            rate, per_cpu = measure(cfg, count, args.seconds, args.batch_size, args.image_size,
                                    warm_samples)
            per_core[name, count] = per_cpu
            print(f"{name:>26} | {count:>7} | {rate:>9.1f} | {rate / max(1, count):>10.1f} | "
                  f"{per_cpu:>14.1f}", flush=True)
    load = os.getloadavg()
    print(f"(load average at the end: {' '.join(f'{x:.1f}' for x in load)}; samples/s fall when "
          "other jobs share the cores, samples per CPU-second much less so)")
    print_feeding(per_core, max_side, args.image_size,
                  [float(t) for t in args.target_rates.split(",")])
    if args.stage_batches > 0:
        device_stage_cost(records(**device), args.batch_size, args.image_size, args.stage_batches)
    fg_files = sorted(os.listdir(os.path.join(args.data_dir, "fg")))[:12]
    reduced_decode_check([os.path.join(args.data_dir, "fg", f) for f in fg_files],
                         args.image_size)
    if args.no_stages:
        return

    pipeline.tune_malloc()  # as the pipeline does (default malloc_tuning=True)
    for name, root, fg_cached in (("1080p files", args.data_dir, False),
                                  ("1080p files, warm fg cache", args.data_dir, True),
                                  (f"prepared {max_side}", args.prepared_dir, False),
                                  (f"raw {max_side}, warm fg cache", args.raw_dir, True),
                                  ("2160p files, reduced decoding", args.large_dir, False)):
        count = args.large_count if root == args.large_dir else args.count
        stages = stage_times(root, os.path.join(root, "bg"), args.image_size, min(count, 12),
                             max_side, fg_cached)
        print(f"\nper-stage CPU cost of one sample, {name} (ms, one thread):")
        for stage, ms in stages.items():
            print(f"  {stage:<28} {ms:7.2f}")
        total = sum(stages.values())
        print(f"  {'total':<28} {total:7.2f}  (= {1000 / total:.0f} samples/s per core)")


if __name__ == "__main__":  # required: Grain worker processes re-import this module
    main()
