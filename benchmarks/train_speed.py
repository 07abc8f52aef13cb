"""Training speed: one supervised step (release loss, SGD momentum 0.9) of the JAX MODNet vs
the PyTorch reference, same weights, same machine, one run; plus peak memory.

JAX runs the project's own step (``modnet_jax.steps.build_supervised_step``: uint8 batch
decoded on device, BatchNorm in train mode, state donated) on one device; torch runs the
reference in ``channels_last`` with the same loss written in torch. Several steps are queued per
repetition without a host sync in between; each next batch is put on the device while the
previous step runs (asynchronous dispatch), as a training loop with a prefetching loader does.

Default size: batch 16 at 512x512 on a GPU; batch 16 at 256x256 on CPU (a 512x512 batch-16 step
takes minutes on 2 cores; --size 512 runs it). Memory: XLA's buffer assignment for the batch-16
512x512 step is printed on every backend (compile only); on a GPU the measured peak device
memory of both frameworks too; ``--rss`` measures the peak resident memory of one batch-16
512x512 step per framework in child processes (CPU; needs ~10 GiB free).

    python -m benchmarks.train_speed [--batch 16] [--size 256] [--steps-per-rep 1] [--rss]

CPU training runs 1.3-2x faster without XLA's YNNPACK fusions (slow kernel-gradient convs;
see RESULTS.md). ``python -m modnet_jax.train`` turns them off by default on the JAX versions
it was measured on (modnet_jax/training/xla_cpu.py); this script keeps XLA's default unless
given ``--xla-flags=--xla_cpu_experimental_ynn_fusion_type=``, which measures what train.py
runs.
"""

from __future__ import annotations

import argparse
import os
from typing import List

from benchmarks import common  # noqa: E402

MEMORY_BATCH, MEMORY_SIZE = 16, 512


def add_args(parser) -> None:
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=None,
                        help="square crop side; default 512 on GPU, 256 on CPU")
    parser.add_argument("--steps-per-rep", type=int, default=None,
                        help="steps queued per timed repetition (default 1 on CPU, 10 on GPU)")
    parser.add_argument("--rss", action="store_true",
                        help="CPU: peak RSS of a batch-16 512x512 step per framework (child "
                             "processes)")
    parser.add_argument("--child", default=None, choices=["jax", "torch"],
                        help=argparse.SUPPRESS)


def synthetic_batches(count: int, batch: int, size: int, seed: int):
    """uint8 {image [B,S,S,3], alpha [B,S,S,1], trimap [B,S,S,1] in {0,128,255}} dicts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for _ in range(count):
        image = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        cy, cx = rng.uniform(0.35, 0.65, (2, batch, 1, 1))
        radius = rng.uniform(0.2, 0.35, (batch, 1, 1))
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        alpha = np.clip((radius - dist) / 0.03, 0.0, 1.0)
        alpha_u8 = np.round(alpha * 255).astype(np.uint8)[..., None]
        trimap = np.where(alpha_u8 == 255, 255, np.where(alpha_u8 == 0, 0, 128)).astype(np.uint8)
        out.append({"image": image, "alpha": alpha_u8, "trimap": trimap})
    return out


# ------------------------------------------------------------------------------- JAX


def jax_trainer(args, variables, batch_size: int, size: int):
    """(step_fn, state, shard) for the project's pmap'd supervised step on one device."""
    import jax

    from modnet_jax import parallel, steps
    from modnet_jax.state import create_train_state, make_optimizer

    devices = parallel.local_devices(1)
    model = common.jax_model(args, axis_name=parallel.AXIS)
    tx = make_optimizer({"name": "sgd", "learning_rate": 0.01, "momentum": 0.9,
                         "lr_decay_every_epochs": 0}, steps_per_epoch=1)
    state = parallel.replicate(create_train_state(model, jax.device_get(variables), tx), devices)
    step = steps.build_supervised_step(model, devices)
    return step, state, (lambda b: parallel.shard_batch(b, devices)), devices


def jax_memory(args, variables, batch_size: int, size: int):
    """XLA's memory analysis of the compiled train step (compile only, nothing runs)."""
    import jax
    import numpy as np

    step, state, _, devices = jax_trainer(args, variables, batch_size, size)
    n = len(devices)
    shapes = {"image": (n, batch_size // n, size, size, 3),
              "alpha": (n, batch_size // n, size, size, 1),
              "trimap": (n, batch_size // n, size, size, 1)}
    batch = {k: jax.ShapeDtypeStruct(v, np.uint8) for k, v in shapes.items()}
    state_shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    return common.compiled_memory(step.lower(state_shapes, batch).compile())


# ------------------------------------------------------------------------------- torch


def torch_release_loss(torch, sem, det, matte, image, trimap, alpha):
    """The released supervised loss (docs/losses.md), NCHW tensors."""
    F = torch.nn.functional
    g = torch.tensor([0.25022103, 0.49955794, 0.25022103], device=alpha.device,
                     dtype=alpha.dtype)
    kernel = (g[:, None] * g[None, :])[None, None]
    small = F.interpolate(alpha, scale_factor=1 / 16, mode="bilinear", align_corners=False)
    gt_sem = F.conv2d(F.pad(small, (1, 1, 1, 1), mode="reflect"), kernel)
    known = (trimap < 0.5) | (trimap > 0.5)
    semantic = 10.0 * torch.mean((sem - gt_sem) ** 2)
    detail = 10.0 * torch.mean(torch.abs(torch.where(known, trimap, det)
                                         - torch.where(known, trimap, alpha)))
    pm = torch.where(known, trimap, matte)
    l1 = lambda a, b: torch.mean(torch.abs(a - b))  # noqa: E731
    matte_loss = (l1(matte, alpha) + 4.0 * l1(pm, alpha) + l1(image * matte, image * alpha)
                  + 4.0 * l1(image * pm, image * alpha))
    return semantic + detail + matte_loss


def torch_trainer(args, state_dict):
    torch, device, autocast = common.torch_setup(args)
    net = common.torch_reference(state_dict, device, train=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def to_device(batch):
        out = {}
        for k, v in batch.items():
            t = torch.from_numpy(v)
            if device == "cuda":
                t = t.pin_memory().to(device, non_blocking=True)
            out[k] = t.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        return out

    def step(b):
        image = (b["image"].float() / 255.0 - 0.5) / 0.5
        alpha = b["alpha"].float() / 255.0
        t = b["trimap"].float()
        trimap = torch.where(t > 191, 1.0, torch.where(t > 63, 0.5, 0.0))
        with common.torch_autocast(device, autocast):
            sem, det, matte = net(image, inference=False)
        loss = torch_release_loss(torch, sem.float(), det.float(), matte.float(), image, trimap,
                                  alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return torch, device, to_device, step


# ------------------------------------------------------------------------------- run


def run(args, variables, state_dict) -> List[common.Row]:
    import jax

    on_gpu = common.backend() == "gpu"
    size = args.size or (512 if on_gpu else 256)
    calls = args.steps_per_rep or (10 if on_gpu else 1)
    host_batches = synthetic_batches(2, args.batch, size, args.seed)

    step, state, shard, _ = jax_trainer(args, variables, args.batch, size)
    box = {"state": state, "i": 0}

    def run_jax():
        metrics = None
        for _ in range(calls):
            batch = shard(host_batches[box["i"] % len(host_batches)])
            box["i"] += 1
            box["state"], metrics = step(box["state"], batch)
        jax.block_until_ready(metrics)

    runners = {"jax": run_jax}
    if not args.no_torch:
        torch, device, to_device, tstep = torch_trainer(args, state_dict)

        def run_torch():
            for _ in range(calls):
                tstep(to_device(host_batches[box["i"] % len(host_batches)]))
                box["i"] += 1
            common.torch_sync(device)

        runners["torch"] = run_torch
    timings = common.interleaved(runners, args.repeats, warmup=1, calls_per_rep=calls)
    print(f"  train step batch {args.batch} {size}x{size}: JAX "
          f"{timings['jax'].median * 1e3:.1f} ms"
          + (f", torch {timings['torch'].median * 1e3:.1f} ms" if "torch" in timings else "")
          + f"  (load {os.getloadavg()[0]:.2f})", flush=True)
    flops = 2 * common.TRAIN_FLOP_FACTOR * common.gmacs("train_forward", size, size) * args.batch
    return [common.Row("train step", args.batch, f"{size}x{size}", flops, timings["jax"],
                       timings.get("torch"))]


def memory_report(args, variables) -> dict:
    """Peak memory of a batch-16 512x512 train step, in GiB."""

    report = {"xla_buffer_assignment": jax_memory(args, variables, MEMORY_BATCH, MEMORY_SIZE)}
    if common.backend() == "gpu":
        report.update(measured_gpu_peaks(args, variables))
    elif args.rss:

        for fw in ("jax", "torch"):
            report[f"{fw}_peak_rss"] = common.child_peak_rss(
                ["-m", "benchmarks.train_speed", "--child", fw, "--fast-paths", args.fast_paths, "--dtype", args.dtype])
    return report


def measured_gpu_peaks(args, variables) -> dict:
    import jax

    _, state_dict = common.shared_weights(args.seed)
    batch = synthetic_batches(1, MEMORY_BATCH, MEMORY_SIZE, args.seed)[0]
    step, state, shard, devices = jax_trainer(args, variables, MEMORY_BATCH, MEMORY_SIZE)
    state, metrics = step(state, shard(batch))
    jax.block_until_ready(metrics)
    stats = devices[0].memory_stats() or {}
    out = {"jax_peak_bytes_in_use": stats.get("peak_bytes_in_use", 0) / 1024.0 ** 3}
    if not args.no_torch:
        torch, device, to_device, tstep = torch_trainer(args, state_dict)
        torch.cuda.reset_peak_memory_stats()
        tstep(to_device(batch))
        torch.cuda.synchronize()
        out["torch_max_memory_allocated"] = torch.cuda.max_memory_allocated() / 1024.0 ** 3
    return out


def child_main(args) -> None:
    """One batch-16 512x512 step of one framework; prints its peak RSS (for --rss)."""
    variables, state_dict = common.shared_weights(args.seed)
    batch = synthetic_batches(1, MEMORY_BATCH, MEMORY_SIZE, args.seed)[0]
    if args.child == "jax":
        import jax

        step, state, shard, _ = jax_trainer(args, variables, MEMORY_BATCH, MEMORY_SIZE)
        state, metrics = step(state, shard(batch))
        jax.block_until_ready(metrics)
    else:
        _, _, to_device, tstep = torch_trainer(args, state_dict)
        tstep(to_device(batch))
    print(f"PEAK_RSS_GIB {common.peak_rss_gib():.3f}")


def format_memory(report: dict) -> str:
    xla = report.get("xla_buffer_assignment", {})
    lines = [f"Peak memory, batch-{MEMORY_BATCH} {MEMORY_SIZE}x{MEMORY_SIZE} train step (GiB):"]
    if xla:
        lines.append(
            f"  JAX, XLA buffer assignment of the compiled step: {xla['peak_estimate']:.2f} "
            f"(arguments {xla['argument']:.2f} + outputs {xla['output']:.2f} - aliased "
            f"(donated) {xla['alias']:.2f} + temporaries {xla['temp']:.2f})")
    for key, label in (("jax_peak_bytes_in_use", "JAX measured device peak_bytes_in_use"),
                       ("torch_max_memory_allocated", "torch measured max_memory_allocated"),
                       ("jax_peak_rss", "JAX process peak RSS (child process, incl. runtime)"),
                       ("torch_peak_rss", "torch process peak RSS (child process, incl. runtime)")):
        if report.get(key) is not None:
            lines.append(f"  {label}: {report[key]:.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    add_args(parser)
    args = parser.parse_args(argv)
    if args.child:
        common.setup(args)
        common.resolve_defaults(args)
        child_main(args)
        return
    info = common.start(args)
    variables, state_dict = common.shared_weights(args.seed)
    rows = run(args, variables, state_dict)
    memory = memory_report(args, variables)
    common.finish(args, info, rows, memory, format_memory(memory))


if __name__ == "__main__":
    main()
