"""The benchmarks' one shared helper: environment set-up, the same weights for JAX and the
PyTorch reference (``tests/torch_reference.py``, imported as ``tests.torch_reference`` since
the scripts run as modules from the repository root), timing (interleaved repetitions,
medians), XLA compile counting, FLOP figures, memory and the printed table.

Nothing here is part of the test suite. Import order matters: the scripts parse their
arguments, call :func:`setup` (which sets ``XLA_FLAGS`` and thread counts) and only then import
JAX, torch and ``modnet_jax``.

Conventions (also printed under each table):

* FLOPs are the nominal multiply-adds of the release model (docs/architecture.md): 15.47
  GMACs per 512x512 image for inference, 18.12 GMACs for the forward pass with the training
  outputs; they scale with the pixel count. A training step counts 3x its forward pass (the
  backward pass computes input and weight gradients), 1 MAC = 2 FLOPs. Achieved FLOP/s is
  nominal FLOPs over measured time, whatever algorithm ran (the JAX fast paths do fewer real
  multiply-adds in conv_lr16x; the figure is comparable between implementations).
* Each measurement alternates JAX and torch repetitions (with a short pause between them, see
  :func:`interleaved`), so a change of machine load hits both; the table shows medians (and
  minima), wall clock, and CPU seconds per image of the process (all threads).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GMACS_INFERENCE_512 = 15.47
GMACS_TRAIN_FORWARD_512 = 18.12
TRAIN_FLOP_FACTOR = 3.0
# NVIDIA H200 (SXM): dense BF16 tensor-core peak, TFLOP/s (same compute as an H100 SXM).
H200_BF16_PEAK_TFLOPS = 989.0


def gmacs(kind: str, height: int, width: int) -> float:
    """Nominal GMACs per image of ``kind`` 'inference' | 'train_forward' at height x width."""
    base = GMACS_INFERENCE_512 if kind == "inference" else GMACS_TRAIN_FORWARD_512
    return base * height * width / (512.0 * 512.0)


def add_common_args(parser) -> None:
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="JAX compute dtype (params and BN statistics stay float32); torch "
                             "uses autocast to the same dtype on GPU. Default: float32 on CPU, "
                             "bfloat16 on GPU")
    parser.add_argument("--fast-paths", default="auto", choices=["auto", "on", "off"],
                        help="modnet_jax fast paths (models.layers); 'off' is the plain path")
    parser.add_argument("--depthwise-impl", default="auto", choices=["auto", "xla", "shifted"])
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="peak of the device for the fraction-of-peak column; default on a "
                             "GPU: H200 BF16 dense (989); on CPU: a measured fp32 matmul rate")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: all cores, like XLA)")
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
    parser.add_argument("--gomp-spincount", default="10000",
                        help="GOMP_SPINCOUNT for torch's OpenMP threads unless already set in "
                             "the environment ('' leaves libgomp's default)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per row (default 5 on CPU, 20 on GPU)")
    parser.add_argument("--no-torch", action="store_true", help="time JAX only")
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    parser.add_argument("--seed", type=int, default=0)


def setup(args) -> None:
    """Environment before JAX/torch are imported: XLA flags, thread counts."""
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    if args.gomp_spincount and "GOMP_SPINCOUNT" not in os.environ:
        # libgomp's default spin-wait at barriers is pathological when other processes share
        # the cores: measured 3.3 s instead of 0.21 s for one 512x512 inference on 2 busy
        # cores. A short spin is torch's best setting here (and changes nothing when idle).
        os.environ["GOMP_SPINCOUNT"] = str(args.gomp_spincount)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def backend() -> str:
    import jax

    return jax.default_backend()


def resolve_defaults(args) -> None:
    on_gpu = backend() == "gpu"
    if args.dtype is None:
        args.dtype = "bfloat16" if on_gpu else "float32"
    if args.repeats is None:
        args.repeats = 20 if on_gpu else 5
    if args.peak_tflops is None and on_gpu:
        args.peak_tflops = H200_BF16_PEAK_TFLOPS
    if args.threads is None:
        args.threads = os.cpu_count() or 1


# --------------------------------------------------------------------------- machine


def machine_info() -> Dict[str, Any]:
    import jax

    info: Dict[str, Any] = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in jax.devices()],
        "cpu_cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_start": os.getloadavg(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measured_cpu_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a size^3 XLA matmul: the CPU's practical peak, for the peak column."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * size ** 3 / best / 1e9


# --------------------------------------------------------------------------- weights


def shared_weights(seed: int = 0, calibrate_size: int = 128):
    """(flax variables, torch state_dict as tensors) holding the same numbers.

    The JAX release init is converted with ``modnet_jax.interop``; then every BatchNorm's
    running statistics are set to its batch statistics on one random batch (the reference's
    ``calibrate_``) and the result converted back, so that eval mode is as well scaled as a
    trained model's. (With the init's running stats 0/1, eval-mode activations decay into
    float32 denormals, which make PyTorch's CPU kernels ~10x slower and would time that.)
    """
    import jax
    import numpy as np
    import torch

    from modnet_jax.interop import keys, torch_io
    from modnet_jax.models import create_model
    from tests.torch_reference import ReferenceMODNet, calibrate_

    _, variables = create_model(rng=jax.random.key(seed))
    net = ReferenceMODNet()
    net.load_state_dict(torch_io.to_tensors(keys.flax_to_torch(jax.device_get(variables))),
                        strict=True)
    g = torch.Generator().manual_seed(seed)
    calibrate_(net, torch.rand(2, 3, calibrate_size, calibrate_size, generator=g) * 2 - 1)
    numpy_sd = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    calibrated, kind = keys.torch_to_flax(numpy_sd)
    assert kind == "modnet"
    calibrated = jax.tree_util.tree_map(np.asarray, calibrated)
    return calibrated, torch_io.to_tensors(numpy_sd)


def jax_model(args, axis_name: Optional[str] = None):
    from modnet_jax.models import model_from_config

    model = model_from_config({"dtype": args.dtype, "depthwise_impl": args.depthwise_impl},
                              axis_name=axis_name)
    return model.clone(fast_paths=args.fast_paths)


def torch_setup(args):
    """(torch module, device, autocast dtype or None) with the benchmark's thread count."""
    import torch

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = torch.bfloat16 if (args.dtype == "bfloat16" and device == "cuda") else None
    return torch, device, autocast


def torch_reference(state_dict, device: str, train: bool):
    """The independent PyTorch MODNet (tests/torch_reference.py) in channels_last."""
    from tests.torch_reference import ReferenceMODNet, channels_last

    net = ReferenceMODNet()
    net.load_state_dict(state_dict, strict=True)
    net = channels_last(net.to(device))
    return net.train(train)


def torch_autocast(device: str, dtype):
    """torch.autocast to ``dtype`` on ``device``, or a no-op context when ``dtype`` is None."""
    import contextlib

    import torch

    return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def torch_sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Per-repetition wall and process-CPU seconds (each repetition may run several calls)."""

    wall: List[float] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)
    calls_per_rep: int = 1

    def per_call(self, values: Sequence[float]) -> List[float]:
        return [v / self.calls_per_rep for v in values]

    @property
    def median(self) -> float:
        return statistics.median(self.per_call(self.wall))

    @property
    def minimum(self) -> float:
        return min(self.per_call(self.wall))

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.per_call(self.cpu))


def interleaved(runners: Dict[str, Callable[[], None]], repeats: int, warmup: int = 1,
                calls_per_rep: int = 1, pause: Optional[float] = None) -> Dict[str, Timing]:
    """Time each runner ``repeats`` times, alternating between runners every repetition.

    A runner must block until its work is done (``block_until_ready`` / cuda sync) after its
    last call; ``calls_per_rep`` calls are issued per repetition without syncing in between.
    On CPU each repetition starts ``pause`` seconds (default 0.3) after the previous one: both
    runtimes keep their worker threads spinning for a while after a call, and torch started
    right after a JAX call was measured ~2.5x slower than 50 ms later (and JAX would suffer
    the same from torch's OpenMP threads).
    """
    if pause is None:
        pause = 0.3 if backend() == "cpu" else 0.0
    for run in runners.values():
        for _ in range(warmup):
            run()
    out = {name: Timing(calls_per_rep=calls_per_rep) for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            time.sleep(pause)
            c0, t0 = time.process_time(), time.perf_counter()
            run()
            out[name].wall.append(time.perf_counter() - t0)
            out[name].cpu.append(time.process_time() - c0)
    return out


def count_compiles() -> Dict[str, Any]:
    """A dict ``jax.monitoring`` keeps up to date in this process: backend compiles (persistent
    cache hits included), their seconds, and cache hits; XLA compiles = compiles - hits."""
    import jax

    counts = {"backend_compiles": 0, "compile_s": 0.0, "cache_hits": 0}

    def on_duration(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            counts["backend_compiles"] += 1
            counts["compile_s"] += duration

    def on_event(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            counts["cache_hits"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    return counts


def median_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``fn()`` (which blocks until done) after one warm-up call."""
    import statistics

    fn()  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


# --------------------------------------------------------------------------- memory


def compiled_memory(compiled) -> Dict[str, float]:
    """GiB from ``Compiled.memory_analysis()`` (XLA's buffer assignment of the executable)."""
    ma = compiled.memory_analysis()
    if ma is None:
        return {}
    if isinstance(ma, (list, tuple)):
        ma = ma[0]
    gib = 1024.0 ** 3
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes")
    out = {f.replace("_size_in_bytes", ""): getattr(ma, f, 0) / gib for f in fields}
    out["peak_estimate"] = (out["argument"] + out["output"] - out["alias"] + out["temp"])
    return out


def peak_rss_gib() -> float:
    """High-water resident set size of this process so far (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 ** 2


def child_peak_rss(argv: List[str]) -> Optional[float]:
    """Run ``python argv`` in a fresh process and return its peak RSS in GiB (None on error)."""
    proc = subprocess.run([sys.executable] + argv, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("PEAK_RSS_GIB "):
            return float(line.split()[1])
    sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
    return None


# --------------------------------------------------------------------------- table


@dataclass
class Row:
    what: str              # e.g. "inference latency, batch 1"
    batch: int
    size: str              # "512x512"
    gflop_per_step: float  # nominal GFLOPs of one call / step
    jax: Timing
    torch: Optional[Timing] = None

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        for k in ("jax", "torch"):
            if getattr(self, k) is not None:
                t = getattr(self, k)
                d[k] = {"wall_s": t.per_call(t.wall), "cpu_s": t.per_call(t.cpu),
                        "median_s": t.median, "min_s": t.minimum, "cpu_median_s": t.cpu_median}
        return d


def format_table(rows: Sequence[Row], peak_tflops: Optional[float], peak_label: str) -> str:
    head = ("| measurement | batch | size | JAX ms (min) | torch ms (min) | JAX/torch time "
            "| JAX img/s | torch img/s | JAX CPU-s/img | torch CPU-s/img | GFLOP/img "
            "| JAX TFLOP/s | torch TFLOP/s | JAX % peak |")
    sep = "|" + "|".join(["---"] + ["---:"] * 13) + "|"
    lines = [head, sep]
    for r in rows:
        j, t = r.jax, r.torch
        per_img = r.gflop_per_step / r.batch
        jt = r.gflop_per_step / j.median / 1e3
        cells = [r.what, str(r.batch), r.size,
                 f"{j.median * 1e3:.1f} ({j.minimum * 1e3:.1f})",
                 f"{t.median * 1e3:.1f} ({t.minimum * 1e3:.1f})" if t else "-",
                 f"{j.median / t.median:.2f}x" if t else "-",
                 f"{r.batch / j.median:.2f}", f"{r.batch / t.median:.2f}" if t else "-",
                 f"{j.cpu_median / r.batch:.3f}", f"{t.cpu_median / r.batch:.3f}" if t else "-",
                 f"{per_img:.1f}", f"{jt:.3f}",
                 f"{r.gflop_per_step / t.median / 1e3:.3f}" if t else "-",
                 f"{100 * jt / peak_tflops:.1f}%" if peak_tflops else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "JAX/torch time: ratio of median times (below 1: JAX faster). Medians over the "
        "repetitions, minimum in brackets; CPU-s: process CPU seconds (all threads) per image.",
        f"FLOPs: nominal (15.47 GMACs inference / 18.12 GMACs training forward per 512x512 "
        f"image, scaled by pixels; training step = {TRAIN_FLOP_FACTOR:g}x forward; 2 FLOPs/MAC).",
        f"Peak: {peak_label}.",
    ]
    return "\n".join(lines + notes)


def print_header(info: Dict[str, Any], args) -> None:
    print(f"# MODNet speed, {info['date']}")
    print(f"machine: {info['cpu_model']}, {info['cpu_cores']} cores; JAX {info['jax']} "
          f"({info['backend']}: {', '.join(sorted(set(info['devices'])))}); "
          f"torch {info.get('torch')} ({info.get('torch_device', 'cpu')}, "
          f"{args.threads} threads)")
    print(f"dtype {args.dtype}; fast_paths={args.fast_paths}; depthwise_impl="
          f"{args.depthwise_impl}; XLA_FLAGS='{info['xla_flags']}'; GOMP_SPINCOUNT="
          f"{info['gomp_spincount']}; load average at start "
          f"{', '.join(f'{x:.2f}' for x in info['load_average_start'])}")
    sys.stdout.flush()


def peak_for(args) -> tuple:
    if args.peak_tflops:
        label = f"{args.peak_tflops:g} TFLOP/s"
        if backend() == "gpu" and args.peak_tflops == H200_BF16_PEAK_TFLOPS:
            label += " (H200 dense BF16)"
        return args.peak_tflops, label
    if backend() == "cpu":
        gf = measured_cpu_peak_gflops()
        return gf / 1e3, f"measured fp32 2048^3 XLA matmul on this CPU, {gf:.0f} GFLOP/s"
    return None, "unknown (pass --peak-tflops)"


def write_json(path: Optional[str], payload: Dict[str, Any]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(payload, f, indent=1, default=str)


def start(args) -> Dict[str, Any]:
    """After parsing: environment, defaults, header. Returns the machine info."""
    setup(args)
    resolve_defaults(args)
    info = machine_info()
    print_header(info, args)
    return info


def finish(args, info, rows: Sequence[Row], memory: Optional[Dict[str, Any]] = None,
           memory_text: str = "") -> None:
    """Print the table (and memory), the final load, and write the JSON if asked."""
    peak, label = peak_for(args)
    print()
    print(format_table(rows, peak, label))
    if memory_text:
        print()
        print(memory_text)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    write_json(args.json, {"info": info, "args": vars(args), "memory": memory or {},
                           "rows": [r.as_dict() for r in rows]})
