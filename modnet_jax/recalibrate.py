"""Prepare released weights for training on your data: real BatchNorm statistics (and heads).

    python -m modnet_jax.recalibrate --init modnet_photographic_portrait_matting.onnx \\
        --data /data/my_frames --output ckpt/prepared [--size 512] [--batches 8] \\
        [--batch-size 8] [--fit-heads 200]

``--data``: a folder of images and/or videos (any depth; every ``--frame-stride``-th video
frame), read like SOC's unlabelled data, random crops of ``--size``.

1. Every BatchNorm gets statistics measured on ``--batches`` batches of ``--batch-size``
   (use your training batch size) and its gamma/beta are rescaled so the eval-mode function is
   unchanged (``modnet_jax/training/recalibrate.py``). The official ONNX export's folded
   BatchNorms (mean 0, var 1 - eps) otherwise make a train-mode forward a different function.
2. ``--fit-heads N`` (for SOC from the ONNX export, whose training-only semantic and detail
   heads are missing): N Adam steps distilling those heads from the model's own matte, nothing
   else changing (``modnet_jax/training/heads.py``).

Writes a model-only checkpoint for ``--config.init_from``. Supervised fine-tuning
(``--config finetune``) does step 1 by itself (``recalibrate_batches``); SOC needs step 2.
"""

from __future__ import annotations

import argparse
import os
import sys


HELP = """Give released weights real BatchNorm statistics (and, for SOC, training heads)
before training on your data; writes a checkpoint for --config.init_from.

  python -m modnet_jax.recalibrate --init modnet_photographic_portrait_matting.onnx \\
      --data my_frames/ --output ckpt/prepared --fit-heads 200

--config finetune does this by itself; SOC from the ONNX export needs it (docs/training.md)."""


def build_parser():
    from modnet_jax.cliutil import command_parser

    p = command_parser("modnet_jax.recalibrate", HELP,
                       usage="--init FILE --data DIR --output DIR [options]")
    io = p.add_argument_group("files")
    io.add_argument("--init", required=True,
                    help="the official .onnx, a release .pth/.ckpt or a checkpoint folder")
    io.add_argument("--data", required=True,
                    help="folder of images and/or videos (any depth)")
    io.add_argument("--output", required=True, help="checkpoint folder to write")
    how = p.add_argument_group("calibration")
    how.add_argument("--size", type=int, default=512, help="crop size, a multiple of 32")
    how.add_argument("--batches", type=int, default=8, help="calibration batches")
    how.add_argument("--batch-size", type=int, default=8,
                     help="crops per batch: your training batch size")
    how.add_argument("--fit-heads", type=int, default=0, metavar="STEPS",
                     help="then distil the training-only heads for this many steps (batch 2)")
    how.add_argument("--frame-stride", type=int, default=5, help="use every n-th video frame")
    how.add_argument("--seed", type=int, default=0, help="which crops are drawn")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    from modnet_jax.cliutil import dashed, folder_problem

    p = build_parser()
    args = p.parse_args(dashed(argv))
    if args.size <= 0 or args.size % 32:
        p.error(f"--size must be a positive multiple of 32, got {args.size}")
    if args.batches <= 0 or args.batch_size <= 0 or args.fit_heads < 0:
        p.error("--batches and --batch-size must be positive, --fit-heads >= 0")
    if not os.path.exists(args.init):
        p.error(f"--init {args.init}: no such file or folder")
    if not os.path.isdir(args.data):
        p.error(f"--data {args.data}: no such folder")
    if os.path.isdir(os.path.join(args.output, "0")):
        p.error(f"--output {args.output} already holds a checkpoint; choose another")
    _, problem = folder_problem(args.output)
    if problem:
        p.error(f"--output {args.output}: {problem}")
    return args


def _batches(args, batch_size: int, count: int, seed: int):
    import numpy as np

    from modnet_jax.data import make_unlabelled_iterator

    cfg = {"layout": "unlabelled", "root": args.data, "video_frame_stride": args.frame_stride}
    it = make_unlabelled_iterator(cfg, batch_size=batch_size, seed=seed, image_size=args.size)
    return [(np.asarray(next(it)["image"], np.float32) / 255.0 - 0.5) / 0.5
            for _ in range(count)]


def run(args: argparse.Namespace) -> None:
    import numpy as np

    from modnet_jax.checkpointing import save_variables
    from modnet_jax.data import validate_dataset
    from modnet_jax.models import model_from_config
    from modnet_jax.training.heads import fit_training_heads
    from modnet_jax.training.pretrained import load_init_variables
    from modnet_jax.training.recalibrate import recalibrate_batchnorm

    print(validate_dataset({"layout": "unlabelled", "root": args.data,
                            "video_frame_stride": args.frame_stride},
                           image_size=args.size, split="unlabelled"))
    model = model_from_config(None)
    variables = load_init_variables(args.init)
    variables, report = recalibrate_batchnorm(
        model, variables, _batches(args, args.batch_size, args.batches, args.seed))
    print(f"re-estimated {report['batchnorms']} BatchNorms on {args.batches} x "
          f"{args.batch_size} crops of {args.size} (eval function unchanged)")
    if args.fit_heads:
        variables, losses = fit_training_heads(
            model, variables, _batches(args, 2, args.fit_heads, args.seed + 1))
        k = max(1, min(10, len(losses) // 4))
        print(f"fitted the semantic/detail heads: loss {np.mean(losses[:k]):.4f} -> "
              f"{np.mean(losses[-k:]):.4f} over {len(losses)} steps")
    print("wrote", save_variables(args.output, variables, 0))


def main(argv=None) -> int:
    args = parse_args(argv)  # --help, --version and usage mistakes before any heavy import
    from modnet_jax.data import DatasetError
    from modnet_jax.interop.torch_io import InteropError

    try:
        run(args)
    except (DatasetError, InteropError, ValueError, FileNotFoundError, FileExistsError) as err:
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
