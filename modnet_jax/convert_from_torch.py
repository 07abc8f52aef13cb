"""Convert a PyTorch MODNet checkpoint (e.g. a released one) to a modnet_jax checkpoint.

    python -m modnet_jax.convert_from_torch \\
        --input modnet_photographic_portrait_matting.ckpt --output ckpt/modnet_photographic
    python -m modnet_jax.convert_from_torch --input mobilenetv2_human_seg.ckpt \\
        --output ckpt/init_human_seg    # backbone only; the rest gets the release's init
    python -m modnet_jax.convert_from_torch \\
        --input modnet_photographic_portrait_matting.onnx --output ckpt/modnet_onnx

Accepts the full model's state_dict with or without the ``module.`` prefix, or a bare
MobileNetV2 ``features.*`` state_dict (then only the backbone comes from the file). The file is
read with ``torch.load(weights_only=True)``: files carrying pickled code are refused. Missing,
unexpected and misshapen keys are all reported by name. The output is a model-only Orbax
checkpoint (``<output>/<step>/state``) usable as ``--checkpoint`` or ``config.init_from``.

A ``.onnx`` input is read as the official ONNX export (needs only ``onnx``, not torch): its
folded Conv+BatchNorm pairs become conv + BatchNorm(gamma 1, beta b, mean 0, var 1 - eps), the
same eval-mode function; the training-only semantic/detail heads, absent from the export, get
the release's initialisation (``--seed``). Before training such a model, give its BatchNorms
real statistics: ``python -m modnet_jax.recalibrate`` (train mode is otherwise far off).
Needs the optional extra: pip install "modnet_jax[torch]".
"""

from __future__ import annotations

import argparse
import os
import sys

from modnet_jax.cliutil import command_parser, dashed

HELP = """Import released MODNet weights (a PyTorch state_dict or the official ONNX export) as a
modnet_jax checkpoint. predict, evaluate and train's --config.init_from also take those files
directly; convert once to skip the import at every start.

  python -m modnet_jax.convert_from_torch \\
      --input modnet_photographic_portrait_matting.onnx --output ckpt/release

A .pth/.ckpt needs pip install "modnet_jax[torch]", a .onnx only onnx (docs/interop.md).
Exit status: 0 written, 1 failed, 2 usage mistake."""


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser("modnet_jax.convert_from_torch", HELP,
                       usage="--input FILE --output DIR [options]")
    io = p.add_argument_group("files")
    io.add_argument("--input", required=True,
                    help="a .pth/.ckpt state_dict (whole MODNet or MobileNetV2 backbone only), "
                         "or the official .onnx export")
    io.add_argument("--output", required=True, help="checkpoint folder to write")
    more = p.add_argument_group("options")
    more.add_argument("--step", type=int, default=0, help="step number to save under")
    more.add_argument("--seed", type=int, default=0,
                      help="init seed of what the file lacks (a backbone file: the heads; the "
                           "ONNX export: the training-only heads)")
    return p.parse_args(dashed(argv))


def _shapes(tree) -> dict:
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}


def _check_output(args: argparse.Namespace) -> None:
    if os.path.isdir(os.path.join(args.output, str(args.step))):
        raise FileExistsError(f"{args.output} already holds step {args.step}; choose another "
                              f"--output or --step")


def convert_onnx(args: argparse.Namespace) -> None:
    from modnet_jax.checkpointing import save_variables
    from modnet_jax.interop import keys, onnx_import

    onnx_import.require_onnx()
    _check_output(args)
    state_dict, filled = onnx_import.onnx_to_state_dict(args.input, args.seed)
    variables, _ = keys.torch_to_flax(state_dict)
    step_dir = save_variables(args.output, variables, args.step, model_config={})  # release
    print(f"read the official ONNX export {args.input} (folded BatchNorms: run "
          f"python -m modnet_jax.recalibrate before training); {len(filled)} training-only "
          f"head tensors initialised with seed {args.seed}; wrote {step_dir}")


def convert(args: argparse.Namespace) -> None:
    import jax

    from modnet_jax.checkpointing import save_variables
    from modnet_jax.interop import keys, torch_io
    from modnet_jax.interop.release_files import release_kind
    from modnet_jax.models import create_model, model_from_config

    if release_kind(args.input) == "ONNX":  # by content (an ONNX model named .pth too)
        return convert_onnx(args)
    torch_io.require_torch()
    _check_output(args)
    state_dict = torch_io.load_state_dict_file(args.input)
    variables, kind = keys.torch_to_flax(state_dict)
    if kind == "backbone":
        _, base = create_model(None, jax.random.key(args.seed))
        variables = {c: {**base[c], "backbone": variables[c]["backbone"]}
                     for c in ("params", "batch_stats")}
    else:  # a last guard that the table and the Flax model agree
        model = model_from_config(None)
        x = jax.ShapeDtypeStruct((1, 64, 64, 3), jax.numpy.float32)
        template = jax.eval_shape(model.init, jax.random.key(0), x)
        keys.check_names_and_shapes(_shapes(variables), _shapes(dict(template)),
                                    "converted variables do not fit the Flax MODNet")
    step_dir = save_variables(args.output, variables, args.step, model_config={})  # release
    covered = "the MobileNetV2 backbone (the rest initialised with seed " \
              f"{args.seed})" if kind == "backbone" else "the whole model"
    print(f"read {len(state_dict)} tensors from {args.input} into {covered}; wrote {step_dir}")


def main(argv=None) -> int:
    args = parse_args(argv)  # --help, --version and usage mistakes before any heavy import
    from modnet_jax.interop import torch_io

    return torch_io.run_cli(convert, args)


if __name__ == "__main__":
    sys.exit(main())
