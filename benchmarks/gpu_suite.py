"""The accelerator suite: one prepared run on one GPU (<= 8 minutes), one JSON + one table.

Measures, at 512x512 unless said otherwise:

* training img/s, batch 16 and 64: the project's supervised step (``train_speed.jax_trainer``)
  vs the PyTorch reference (``train_speed.torch_trainer``), fp32 and bf16 (JAX: bf16 compute
  with fp32 params and BatchNorm statistics; torch: autocast to bf16, "AMP");
* inference img/s, batch 1/16/64/256, fp32 and bf16 (JAX; torch too with ``--torch-inference``);
* the video engine end to end (``MattingEngine.video``: uint8 1080p frames in, mattes out, One-
  Frame Delay on): frames/s;
* peak device memory: torch ``max_memory_allocated`` per measurement (reset before each); JAX
  ``device.memory_stats()["peak_bytes_in_use"]``, which JAX cannot reset, so the column is the
  process peak so far (measurements run smallest first within each kind);
* achieved TFLOP/s from the nominal FLOPs (15.47 GMACs per 512x512 image for inference, 18.12
  with the training outputs, a training step = 3x its forward, 2 FLOPs per MAC; see
  ``common.py``) and its fraction of the chip's dense bf16 peak (989 TFLOP/s on an H200;
  ``--peak-tflops`` for another chip; on CPU a measured fp32 matmul rate).

Time limits: each measurement has its own (``--item-limit-s``, enforced by a timer signal
that interrupts the measurement at its next Python step; repetitions stop early to stay under
it) and the suite a total budget (``--budget-s``): a measurement that would start with less
than ``--min-item-s`` left is recorded as skipped. Measurements run in priority order (the
goals first). The JSON is rewritten after every measurement, so a killed run keeps what it
measured. ``gpu_suite.sh`` adds a hard ``timeout``.

    python -m benchmarks.gpu_suite --out gpu_suite_out            # GPU host
    python -m benchmarks.gpu_suite --smoke --out /tmp/suite       # CPU, tiny sizes (tested)

Writes ``<out>/gpu_suite.json`` and ``<out>/gpu_suite.md`` (also printed).
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import sys
import time
import traceback
from typing import Callable, List, Optional

from benchmarks import common  # noqa: E402

GIB = 1024.0 ** 3


class ItemTimeout(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    parser.add_argument("--out", default="gpu_suite_out", help="folder for the JSON and table")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (64x64 images, batches 1-2, 256x144 video) and one "
                             "repetition: checks the whole suite on CPU in about a minute")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="total seconds for all measurements (default 420: 7 of the 8 "
                             "minutes, the rest is start-up and weights)")
    parser.add_argument("--item-limit-s", type=float, default=75.0,
                        help="seconds one measurement may take, compile included")
    parser.add_argument("--min-item-s", type=float, default=20.0,
                        help="skip a measurement when less than this is left of the budget")
    parser.add_argument("--train-batches", default=None, help="default 16,64 (smoke: 2)")
    parser.add_argument("--infer-batches", default=None, help="default 1,16,64,256 (smoke: 1,2)")
    parser.add_argument("--size", type=int, default=None,
                        help="square side (default 512; smoke 64)")
    parser.add_argument("--video", default=None,
                        help="WIDTHxHEIGHT of the engine's frames (default 1920x1080; smoke "
                             "256x144)")
    parser.add_argument("--video-frames", type=int, default=None,
                        help="frames timed through the engine (default 240; smoke 6)")
    parser.add_argument("--dtypes", default="bfloat16,float32",
                        help="compute dtypes to measure (the smoke test uses bfloat16 only)")
    parser.add_argument("--torch-inference", action="store_true",
                        help="also time the PyTorch reference's inference")
    parser.add_argument("--no-engine", action="store_true", help="skip the video engine")
    parser.add_argument("--profile", default=None,
                        help="also write a jax.profiler trace of one repetition of each JAX "
                             "measurement under this folder (for where the time goes)")
    for action in parser._actions:  # common options this suite does not use
        if action.dest in ("dtype", "json"):
            action.help = argparse.SUPPRESS
    return parser


def resolve(args) -> None:
    """Smoke or full sizes; repetitions; the peak for the roofline column."""
    smoke = args.smoke
    args.size = args.size or (64 if smoke else 512)
    args.train_batches = [int(b) for b in (args.train_batches or ("2" if smoke else "16,64"))
                          .split(",")]
    args.infer_batches = [int(b) for b in (args.infer_batches or ("1,2" if smoke else
                                                                   "1,16,64,256")).split(",")]
    args.dtypes = [d for d in ("bfloat16", "float32") if d in args.dtypes.split(",")]
    args.video = args.video or ("256x144" if smoke else "1920x1080")
    args.video_frames = args.video_frames or (6 if smoke else 240)
    args.repeats = args.repeats or (1 if smoke else 10)
    if smoke:
        args.threads = args.threads or 2
    common.resolve_defaults(args)
    if args.dtype is None:
        args.dtype = "float32"


# ----------------------------------------------------------------------------- timing


def timed(run: Callable[[], None], limit_s: float, repeats: int, calls: int,
          trace_dir: Optional[str] = None) -> common.Timing:
    """One warm-up call (compiles), then up to ``repeats`` timed repetitions of ``run`` (each
    ``calls`` steps, blocking at its end), stopping early to stay within ``limit_s``; with
    ``trace_dir``, one more repetition under ``jax.profiler.trace``."""
    start = time.perf_counter()
    run()
    timing = common.Timing(calls_per_rep=calls)
    while len(timing.wall) < repeats:
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        timing.wall.append(time.perf_counter() - t0)
        timing.cpu.append(time.process_time() - c0)
        if time.perf_counter() - start + timing.wall[-1] > 0.9 * limit_s:
            break
    if trace_dir and time.perf_counter() - start + timing.wall[-1] < 0.8 * limit_s:
        import jax

        with jax.profiler.trace(trace_dir):
            run()
    return timing


def _with_dtype(args, dtype: str):
    a = copy.copy(args)
    a.dtype = dtype
    return a


def jax_peak_gib() -> Optional[float]:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / GIB


def torch_peak(torch, device: str, reset: bool = False) -> Optional[float]:
    if device != "cuda":
        return None
    if reset:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return None
    return torch.cuda.max_memory_allocated() / GIB


# ----------------------------------------------------------------------------- measurements


def train_jax(args, weights, dtype: str, batch: int, limit_s: float) -> dict:
    import jax

    from benchmarks import train_speed

    a = _with_dtype(args, dtype)
    step, state, shard, _ = train_speed.jax_trainer(a, weights[0], batch, args.size)
    host = train_speed.synthetic_batches(2, batch, args.size, args.seed)
    box = {"state": state, "i": 0}

    def run():
        metrics = None
        for _ in range(args.calls):
            box["state"], metrics = step(box["state"], shard(host[box["i"] % 2]))
            box["i"] += 1
        jax.block_until_ready(metrics)

    timing = timed(run, limit_s, args.repeats, args.calls, _trace_dir(args, "train", dtype, batch))
    return _result(timing, batch, _train_flops(args.size, batch), jax_peak_gib())


def train_torch(args, weights, dtype: str, batch: int, limit_s: float) -> dict:
    from benchmarks import train_speed

    a = _with_dtype(args, dtype)
    torch, device, to_device, step = train_speed.torch_trainer(a, weights[1])
    host = train_speed.synthetic_batches(2, batch, args.size, args.seed)
    torch_peak(torch, device, reset=True)
    box = {"i": 0}

    def run():
        for _ in range(args.calls):
            step(to_device(host[box["i"] % 2]))
            box["i"] += 1
        common.torch_sync(device)

    timing = timed(run, limit_s, args.repeats, args.calls)
    return _result(timing, batch, _train_flops(args.size, batch), torch_peak(torch, device),
                   _torch_note(device, dtype))


def infer_jax(args, weights, dtype: str, batch: int, limit_s: float) -> dict:
    import jax
    import numpy as np

    model = common.jax_model(_with_dtype(args, dtype))
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False, inference=True)[2])
    v = jax.device_put(weights[0])
    x = jax.device_put(np.random.default_rng(args.seed).uniform(
        -1, 1, (batch, args.size, args.size, 3)).astype(np.float32))
    calls = 1 if batch == 1 else args.calls

    def run():
        out = None
        for _ in range(calls):
            out = apply(v, x)
        out.block_until_ready()

    timing = timed(run, limit_s, args.repeats, calls, _trace_dir(args, "inference", dtype, batch))
    return _result(timing, batch, _infer_flops(args.size, batch), jax_peak_gib())


def infer_torch(args, weights, dtype: str, batch: int, limit_s: float) -> dict:
    import numpy as np

    torch, device, autocast = common.torch_setup(_with_dtype(args, dtype))
    net = common.torch_reference(weights[1], device, train=False)
    x = np.random.default_rng(args.seed).uniform(-1, 1, (batch, 3, args.size, args.size))
    xt = torch.from_numpy(x.astype(np.float32)).to(device).contiguous(
        memory_format=torch.channels_last)
    torch_peak(torch, device, reset=True)
    calls = 1 if batch == 1 else args.calls

    def run():
        with torch.inference_mode(), common.torch_autocast(device, autocast):
            for _ in range(calls):
                net(xt, inference=True)
        common.torch_sync(device)

    timing = timed(run, limit_s, args.repeats, calls)
    return _result(timing, batch, _infer_flops(args.size, batch), torch_peak(torch, device),
                   _torch_note(device, dtype))


def engine_video(args, weights, dtype: str, batch: int, limit_s: float) -> dict:
    """uint8 frames through ``MattingEngine.video`` (resize, model, resize back, OFD, on the
    device), ``video_frames`` per repetition; img/s = frames/s."""
    import numpy as np

    from modnet_jax.inference.engine import MattingEngine

    width, height = (int(v) for v in args.video.split("x"))
    model = common.jax_model(_with_dtype(args, dtype))
    kwargs = {"ref_size": 64} if args.smoke else {}  # smoke: a 64-px model input, not 512
    engine = MattingEngine(model, weights[0], batch_size=batch, **kwargs)
    rng = np.random.default_rng(args.seed)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    count = args.video_frames

    def run():
        n = 0
        for _ in engine.video((frames[i % len(frames)] for i in range(count)), ofd=True):
            n += 1
        assert n == count, (n, count)

    timing = timed(run, limit_s, max(1, args.repeats // 4), count)
    mh, mw = engine.input_size(height, width)
    flops = 2 * common.gmacs("inference", mh, mw) * 1e9  # per frame
    return _result(timing, 1, flops, jax_peak_gib(), extra={"model_input": f"{mw}x{mh}"})


def _trace_dir(args, kind: str, dtype: str, batch: int) -> Optional[str]:
    return os.path.join(args.profile, f"{kind}_{dtype}_b{batch}") if args.profile else None


def _torch_note(device: str, dtype: str) -> dict:
    """On CPU the reference gets no autocast (common.torch_setup): a bf16 row runs fp32."""
    return {"note": "torch on CPU: fp32"} if dtype != "float32" and device != "cuda" else {}


def _train_flops(size: int, batch: int) -> float:
    return 2 * common.TRAIN_FLOP_FACTOR * common.gmacs("train_forward", size, size) * batch * 1e9


def _infer_flops(size: int, batch: int) -> float:
    return 2 * common.gmacs("inference", size, size) * batch * 1e9


def _result(timing: common.Timing, batch: int, flops_per_call: float,
            peak_gib: Optional[float], extra: Optional[dict] = None) -> dict:
    out = {"median_s": timing.median, "min_s": timing.minimum, "repeats": len(timing.wall),
           "img_s": batch / timing.median, "tflops": flops_per_call / timing.median / 1e12,
           "peak_mem_gib": peak_gib}
    out.update(extra or {})
    return out


# ----------------------------------------------------------------------------- plan + run


def plan(args) -> List[dict]:
    """Every measurement, in priority order: the goals' figures first."""
    items = []

    def add(kind, framework, dtype, batch, fn, size=None):
        items.append({"kind": kind, "framework": framework, "dtype": dtype, "batch": batch,
                      "size": size or f"{args.size}x{args.size}", "fn": fn})

    tb, ib, dtypes = args.train_batches, args.infer_batches, args.dtypes
    low = dtypes[0]  # bf16 unless only fp32 was asked for
    for b in tb[:1]:  # goal: training >= 1.5x the reference (bf16, then fp32)
        for dtype in dtypes:
            add("train", "jax", dtype, b, train_jax)
            if not args.no_torch:
                add("train", "torch", dtype, b, train_torch)
    for b in ib:  # goal: inference >= 3,000 img/s in bf16
        add("inference", "jax", low, b, infer_jax)
    if not args.no_engine:
        add("video engine", "jax", low, 2 if args.smoke else 8, engine_video, args.video)
    for dtype in dtypes[1:]:
        for b in ib:
            add("inference", "jax", dtype, b, infer_jax)
    for b in tb[1:]:
        for dtype in dtypes:
            add("train", "jax", dtype, b, train_jax)
            if not args.no_torch:
                add("train", "torch", dtype, b, train_torch)
    if args.torch_inference and not args.no_torch:
        for dtype in dtypes:
            for b in ib:
                add("inference", "torch", dtype, b, infer_torch)
    return items


def _alarm(signum, frame):
    del signum, frame
    raise ItemTimeout()


def run_items(args, weights, items: List[dict], write: Callable[[], None]) -> None:
    start = time.perf_counter()
    has_alarm = hasattr(signal, "SIGALRM")
    if has_alarm:
        previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for item in items:
            left = args.budget_s - (time.perf_counter() - start)
            label = f"{item['kind']} {item['framework']} {item['dtype']} batch {item['batch']}"
            if left < args.min_item_s:
                item.update(status="skipped: suite budget spent")
                print(f"  {label}: skipped (budget)", flush=True)
                continue
            limit = min(args.item_limit_s, left)
            t0 = time.perf_counter()
            if has_alarm:
                signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                item.update(item["fn"](args, weights, item["dtype"], item["batch"], limit))
                item["status"] = "ok"
            except ItemTimeout:
                item["status"] = f"timeout after {limit:.0f} s"
            except Exception as err:  # one failing measurement must not end the suite
                item["status"] = f"error: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
                traceback.print_exc()
            finally:
                if has_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            item["seconds"] = time.perf_counter() - t0
            shown = (f"{item['img_s']:.1f} img/s" if item["status"] == "ok" else item["status"])
            print(f"  {label}: {shown} ({item['seconds']:.0f} s)", flush=True)
            write()
    finally:
        if has_alarm:
            signal.signal(signal.SIGALRM, previous)


def _ratio(items, kind, dtype, batch) -> Optional[float]:
    found = {i["framework"]: i for i in items if i["kind"] == kind and i["dtype"] == dtype
             and i["batch"] == batch and i.get("status") == "ok"}
    if "jax" in found and "torch" in found:
        return found["jax"]["img_s"] / found["torch"]["img_s"]
    return None


def table(args, items: List[dict], peak_tflops: Optional[float], peak_label: str) -> str:
    head = ("| measurement | framework | dtype | batch | size | img/s | ms per call (min) "
            "| TFLOP/s | % of peak | peak memory GiB | status |")
    lines = [head, "|" + "|".join(["---"] * 5 + ["---:"] * 5 + ["---"]) + "|"]
    for i in items:
        ok = i.get("status") == "ok"
        mem = i.get("peak_mem_gib")
        cells = [i["kind"], i["framework"], i["dtype"], str(i["batch"]), i["size"],
                 f"{i['img_s']:.1f}" if ok else "-",
                 f"{i['median_s'] * 1e3:.1f} ({i['min_s'] * 1e3:.1f})" if ok else "-",
                 f"{i['tflops']:.2f}" if ok else "-",
                 f"{100 * i['tflops'] / peak_tflops:.1f}%" if ok and peak_tflops else "-",
                 f"{mem:.2f}" if ok and mem is not None else "-",
                 i.get("status", "not run")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for b in args.train_batches:
        for dtype in args.dtypes:
            r = _ratio(items, "train", dtype, b)
            if r is not None:
                lines.append(f"- training, batch {b}, {dtype}: JAX/torch img/s = **{r:.2f}x** "
                             f"(goal >= 1.5x)")
    best = max((i["img_s"] for i in items if i["kind"] == "inference"
                and i["dtype"] == "bfloat16" and i["framework"] == "jax"
                and i.get("status") == "ok"), default=None)
    if best is not None:
        lines.append(f"- inference bf16, best batch: **{best:.0f} img/s** (goal >= 3,000 img/s "
                     f"at {args.size}x{args.size})")
    lines += ["",
              f"ms per call: one training step, one inference batch, or one video frame; "
              f"median of the repetitions (minimum in brackets). TFLOP/s from nominal FLOPs "
              f"(15.47 GMACs/512x512 inference, 18.12 training forward, training = 3x forward, "
              f"2 FLOPs/MAC); peak: {peak_label}. Peak memory: torch max_memory_allocated per "
              f"measurement; JAX peak_bytes_in_use of the process so far (not resettable)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX and torch share it
    common.setup(args)
    resolve(args)
    args.calls = 1 if (args.smoke or common.backend() == "cpu") else 5
    info = common.machine_info()
    common.print_header(info, args)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    weights = common.shared_weights(args.seed, calibrate_size=args.size if args.smoke else 128)
    info["weights_s"] = time.perf_counter() - t0
    if args.smoke and not args.peak_tflops and common.backend() == "cpu":
        gf = common.measured_cpu_peak_gflops(size=512, repeats=3)
        peak_tflops, peak_label = gf / 1e3, f"measured fp32 512^3 XLA matmul, {gf:.0f} GFLOP/s"
    else:
        peak_tflops, peak_label = common.peak_for(args)
    items = plan(args)

    def rows():
        return [{k: v for k, v in i.items() if k != "fn"} for i in items]

    def write():
        common.write_json(os.path.join(args.out, "gpu_suite.json"),
                          {"info": info, "peak_tflops": peak_tflops, "peak_label": peak_label,
                           "args": {k: v for k, v in vars(args).items()}, "items": rows()})

    run_items(args, weights, items, write)
    info["total_s"] = time.perf_counter() - t0
    write()
    text = table(args, items, peak_tflops, peak_label)
    with open(os.path.join(args.out, "gpu_suite.md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"total {info['total_s']:.0f} s")
    return 0 if all(i.get("status") == "ok" for i in items) else 1


if __name__ == "__main__":
    sys.exit(main())
