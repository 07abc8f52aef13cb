"""Inference speed: JAX MODNet vs the PyTorch reference, same weights, same machine, one run.

Latency at batch 1 and throughput at batch 16 and 64, 512x512, ``inference=True`` (matte only),
fp32 on CPU / bf16 compute on GPU by default. JAX and torch repetitions alternate.

    python -m benchmarks.inference_speed [--batches 1,16,64] [--size 512] [--fast-paths auto]
        [--dtype float32|bfloat16] [--peak-tflops 989] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
from typing import List

from benchmarks import common  # noqa: E402


def add_args(parser) -> None:
    parser.add_argument("--batches", default="1,16,64",
                        help="comma-separated batch sizes (the first is reported as latency)")
    parser.add_argument("--size", type=int, default=512, help="square input side (multiple of 32)")


def run(args, variables, state_dict) -> List[common.Row]:
    import jax
    import numpy as np

    on_gpu = common.backend() == "gpu"
    model = common.jax_model(args)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False, inference=True)[2])
    v_dev = jax.device_put(variables)
    if not args.no_torch:
        torch, device, autocast = common.torch_setup(args)
        net = common.torch_reference(state_dict, device, train=False)

    rows = []
    rng = np.random.default_rng(args.seed)
    s = args.size
    for i, batch in enumerate(int(b) for b in args.batches.split(",")):
        x = rng.uniform(-1.0, 1.0, (batch, s, s, 3)).astype(np.float32)
        x_dev = jax.device_put(x)
        # Latency: one call per repetition. Throughput: on a GPU several calls are queued per
        # repetition without a host sync in between (the device never waits for Python).
        calls = 1 if (i == 0 or not on_gpu) else 10

        def run_jax():
            out = None
            for _ in range(calls):
                out = apply(v_dev, x_dev)
            out.block_until_ready()

        runners = {"jax": run_jax}
        if not args.no_torch:
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
            xt = xt.contiguous(memory_format=torch.channels_last)

            def run_torch():
                with torch.inference_mode(), common.torch_autocast(device, autocast):
                    for _ in range(calls):
                        net(xt, inference=True)
                common.torch_sync(device)

            runners["torch"] = run_torch
        timings = common.interleaved(runners, args.repeats, warmup=1, calls_per_rep=calls)
        what = "inference latency" if i == 0 else "inference throughput"
        rows.append(common.Row(what, batch, f"{s}x{s}",
                               2 * common.gmacs("inference", s, s) * batch,
                               timings["jax"], timings.get("torch")))
        print(f"  {what} batch {batch}: JAX {timings['jax'].median * 1e3:.1f} ms"
              + (f", torch {timings['torch'].median * 1e3:.1f} ms" if "torch" in timings else "")
              + f"  (load {os.getloadavg()[0]:.2f})", flush=True)
        del x_dev
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    add_args(parser)
    args = parser.parse_args(argv)
    info = common.start(args)
    variables, state_dict = common.shared_weights(args.seed)
    common.finish(args, info, run(args, variables, state_dict))


if __name__ == "__main__":
    main()
