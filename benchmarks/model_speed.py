"""JAX MODNet vs the PyTorch reference in one run: inference latency (batch 1) and throughput
(batch 16, 64) at 512x512, a batch-16 training step, peak train-step memory; one table.

Same weights for both (the JAX release init converted with ``modnet_jax.interop``), same
machine, repetitions alternating between the frameworks. Not part of the test suite.

    python -m benchmarks.model_speed                      # CPU defaults (train at 256x256)
    python -m benchmarks.model_speed --train-size 512     # full-size training step
    python -m benchmarks.model_speed --fast-paths off     # the plain path, for comparison
    python -m benchmarks.model_speed --peak-tflops 989    # GPU: bf16 by default, H200 peak

Options of inference_speed.py and train_speed.py apply (``--batches``, ``--size``, ``--batch``,
``--train-size``, ``--rss``, ``--dtype``, ``--json``); see ``--help``.
"""

from __future__ import annotations

import argparse

from benchmarks import common, inference_speed, train_speed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser)
    inference_speed.add_args(parser)
    parser.add_argument("--batch", type=int, default=16, help="training batch")
    parser.add_argument("--train-size", type=int, default=None,
                        help="training crop side; default 512 on GPU, 256 on CPU")
    parser.add_argument("--steps-per-rep", type=int, default=None)
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args(argv)
    info = common.start(args)
    variables, state_dict = common.shared_weights(args.seed)

    rows, memory = [], {}
    if not args.skip_inference:
        rows += inference_speed.run(args, variables, state_dict)
    if not args.skip_train:
        train_args = argparse.Namespace(**vars(args))
        train_args.size = args.train_size
        train_args.child = None
        rows += train_speed.run(train_args, variables, state_dict)
        memory = train_speed.memory_report(train_args, variables)
    common.finish(args, info, rows, memory, train_speed.format_memory(memory) if memory else "")


if __name__ == "__main__":
    main()
