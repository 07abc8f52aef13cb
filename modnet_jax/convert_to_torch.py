"""Convert a modnet_jax checkpoint to the released PyTorch MODNet ``state_dict`` (and ONNX).

    python -m modnet_jax.convert_to_torch --checkpoint runs/exp1 --output modnet.ckpt
    python -m modnet_jax.convert_to_torch --checkpoint runs/exp1 --step 4000 \\
        --output modnet.ckpt --dataparallel --onnx modnet.onnx

The output holds all 751 keys of the official model (``backbone.*`` and its alias
``lr_branch.backbone.*``, ``num_batches_tracked`` included) and loads with
``load_state_dict(strict=True)``; ``--dataparallel`` adds the ``module.`` prefix that the
official demo and training scripts expect. Only ``lr_branch='se'`` models convert (the e-ASPP
variant has no release counterpart). Needs the optional extra: pip install "modnet_jax[torch]".
"""

from __future__ import annotations

import argparse
import os
import sys

from modnet_jax.cliutil import command_parser, dashed

HELP = """Write a checkpoint as the released PyTorch MODNet's state_dict (751 keys, loads with
strict=True into the official MODNet class), optionally also as ONNX.

  python -m modnet_jax.convert_to_torch --checkpoint runs/ft --output modnet.ckpt \\
      --dataparallel --onnx modnet.onnx

Needs pip install "modnet_jax[torch]". Loading the file in PyTorch: README.md, docs/interop.md.
Exit status: 0 written, 1 failed, 2 usage mistake."""


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser("modnet_jax.convert_to_torch", HELP,
                       usage="--checkpoint DIR --output FILE.ckpt [options]")
    io = p.add_argument_group("files")
    io.add_argument("--checkpoint", required=True,
                    help="a training workdir, a checkpoint manager folder or one step folder")
    io.add_argument("--step", type=int, default=None, help="step to convert (default: newest)")
    io.add_argument("--output", required=True, help="the .ckpt file to write")
    io.add_argument("--onnx", default=None, metavar="OUT.onnx",
                    help="also export img [B,3,H,W] -> matte [B,1,H,W] (dynamic batch, height, "
                         "width), checked against torch with onnxruntime")
    fmt = p.add_argument_group("format")
    fmt.add_argument("--dataparallel", action="store_true",
                     help="prefix every key with 'module.', as the released files and the "
                          "official loaders have it")
    fmt.add_argument("--num-batches-tracked", type=int, default=None,
                     help="every BatchNorm's num_batches_tracked (default: the step)")
    fmt.add_argument("--opset", type=int, default=17, help="ONNX opset")
    return p.parse_args(dashed(argv))


def convert(args: argparse.Namespace) -> None:
    from modnet_jax.checkpointing import load_variables, model_metadata, resolve_checkpoint
    from modnet_jax.imaging import output
    from modnet_jax.interop import keys, torch_io

    torch_io.require_torch()  # fail before the (slow) checkpoint restore
    step_dir = resolve_checkpoint(args.checkpoint, args.step)
    saved = model_metadata(step_dir)  # the architecture, known before the (slow) restore
    if saved is not None:
        keys.check_release_architecture(saved.get("lr_branch"), saved.get("hr_channels"))
    variables = load_variables(step_dir)
    step = os.path.basename(step_dir)
    nbt = args.num_batches_tracked
    if nbt is None:
        nbt = int(step) if step.isdigit() else 0
    state_dict = keys.flax_to_torch(variables, nbt, args.dataparallel)
    model = torch_io.torch_model(state_dict)  # strict load: proves the layout before writing
    torch_io.save_state_dict_file(state_dict, args.output)
    print(f"wrote {len(state_dict)} tensors ({'module.' if args.dataparallel else 'no'} "
          f"prefix) from {step_dir} to {args.output}")
    if args.onnx:
        exported = torch_io.export_onnx(model, args.opset)
        diff = torch_io.check_onnx(exported, model)
        if diff > 1e-3:  # checked before it is written: a file that disagrees is never left
            raise torch_io.InteropError(f"the ONNX model disagrees with torch (max |diff| "
                                        f"{diff:.2e}); {args.onnx} not written")
        output.make_folders(os.path.dirname(os.path.abspath(args.onnx)))
        output.atomic_write(args.onnx, exported)
        print(f"wrote {args.onnx} (opset {args.opset}); onnxruntime vs torch max |diff| "
              f"{diff:.2e} on a 2x3x64x96 input")


def main(argv=None) -> int:
    args = parse_args(argv)  # --help, --version and usage mistakes before any heavy import
    from modnet_jax.interop import torch_io

    return torch_io.run_cli(convert, args)


if __name__ == "__main__":
    sys.exit(main())
