"""Pieces shared by the ``predict`` and ``evaluate`` command lines (model options, errors)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Tuple

from modnet_jax.checkpointing import model_config_for
from modnet_jax.cliutil import folder_problem
from modnet_jax.inference.checkpoint import CheckpointError
from modnet_jax.interop.release_files import model_config_for_release, release_kind
from modnet_jax.inference.compile_cache import ENV_VAR, default_cache_dir, setup_compile_cache
from modnet_jax.inference.engine import MAX_IMAGE_PIXELS, MattingEngine
from modnet_jax.inference.images import InputError, image_size, read_image
from modnet_jax.inference.ofd import OFD_THRESHOLD
from modnet_jax.inference.preprocess import MAX_LONG_SIDE, MAX_PIXELS, REF_SIZE
from modnet_jax.models import MODEL_DEFAULTS


class UserError(Exception):
    """Ends a command with ``error: <message>`` on one line and a non-zero exit status."""


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and checkpoint")
    g.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="a modnet_jax checkpoint (training workdir, checkpoint manager folder or "
                        "one step folder), or the released weights as the official ONNX file "
                        "or a PyTorch state_dict (.pth/.pt/.ckpt), imported on the fly")
    g.add_argument("--step", type=int, default=None,
                   help="checkpoint step to load (default: the newest)")
    g.add_argument("--lr-branch", choices=("se", "easpp"), default=None,
                   help="semantic branch of a checkpoint that does not record its model "
                        "(foreign or older files; modnet_jax checkpoints know it). Default: the "
                        f"checkpoint's record, else {MODEL_DEFAULTS['lr_branch']}")
    g.add_argument("--hr-channels", type=int, default=None,
                   help="detail-branch width, likewise (default: the checkpoint's record, "
                        f"else {MODEL_DEFAULTS['hr_channels']})")
    g.add_argument("--ref-size", type=int, default=REF_SIZE,
                   help="reference short side of the release's resize rule (default: "
                        "%(default)s; sides are then floored to multiples of 32)")
    g.add_argument("--batch-size", type=int, default=4,
                   help="photos of equal size run together when this many of them come "
                        "close together; others run one by one (default: %(default)s). "
                        "Where photos are shared among several devices (canvases on 2 or "
                        "more host devices or GPUs: the default on a CPU with 2 or more "
                        "cores), each device takes one photo at a time and this only sets "
                        "how many photos may wait for a partner on their canvas (twice this) "
                        "before a call runs with the devices not all busy")
    g.add_argument("--resize-back", choices=("area", "bilinear"), default="area",
                   help="how the matte returns to the image size (default: %(default)s, as "
                        "the release)")
    m = parser.add_argument_group(
        "memory and compilation",
        "The model input follows the release's rule (short side to --ref-size, sides floored "
        "to multiples of 32), scaled down when it would exceed --max-long-side or "
        "--max-pixels (extreme aspect ratios such as a 300x1 image); images above "
        "--max-image-pixels are skipped with an error line. Photos of different sizes share "
        "compiled models through zero-padded canvases that give each photo the matte of its "
        "own size (one model compile per canvas instead of per size; --exact-shapes turns "
        "this off). Compiled programs are kept in a persistent cache, so a second run with "
        "the same sizes compiles nothing.")
    m.add_argument("--max-long-side", type=int, default=MAX_LONG_SIDE,
                   help="cap on the model input's long side (default: %(default)s)")
    m.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="cap on the model input's pixel count (default: %(default)s)")
    m.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS,
                   help="larger images are refused, per file (default: %(default)s)")
    m.add_argument("--exact-shapes", action="store_true",
                   help="compile the model for each photo's own input size instead of sharing "
                        "canvases (same mattes up to float rounding; faster per photo when a "
                        "folder has many photos of few sizes, slower to compile otherwise)")
    m.add_argument("--compile-cache", metavar="DIR", default=None,
                   help=f"persistent compilation cache folder, or 'none' to turn it off "
                        f"(default: ${ENV_VAR} if set, else {default_cache_dir()})")


def engine_from_args(args: argparse.Namespace, devices=None) -> MattingEngine:
    """A ``MattingEngine`` for the model options (and the compile cache turned on);
    ``devices``: as ``MattingEngine``'s (default: the first device)."""
    for name in ("batch_size", "video_batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.ref_size < 32:
        raise UserError(f"--ref-size must be >= 32, got {args.ref_size}")
    for name in ("max_long_side", "max_pixels", "max_image_pixels"):
        if getattr(args, name) < (32 if name == "max_long_side" else 1024):
            raise UserError(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    setup_compile_cache(args.compile_cache)
    kind = release_kind(args.checkpoint)
    try:
        if kind:  # the release architecture; the file is read by MattingEngine.from_checkpoint
            print(f"{args.checkpoint}: release {kind} weights, imported on the fly",
                  file=sys.stderr)
            cfg = model_config_for_release(args.checkpoint, lr_branch=args.lr_branch,
                                           hr_channels=args.hr_channels)
        else:
            cfg = model_config_for(args.checkpoint, args.step, lr_branch=args.lr_branch,
                                   hr_channels=args.hr_channels)
    except (FileNotFoundError, ValueError) as exc:
        raise CheckpointError(str(exc)) from None
    return MattingEngine.from_checkpoint(
        args.checkpoint, cfg, step=args.step, ref_size=args.ref_size,
        batch_size=args.batch_size, video_batch_size=getattr(args, "video_batch_size", None),
        resize_back=args.resize_back,
        max_long_side=args.max_long_side, max_pixels=args.max_pixels,
        max_image_pixels=args.max_image_pixels,
        ofd_threshold=getattr(args, "ofd_threshold", OFD_THRESHOLD), devices=devices,
        canvases=not getattr(args, "exact_shapes", False))


def read_checked(engine: MattingEngine, path: str):
    """``read_image(path)``, refusing (InputError) an image above the engine's pixel limit
    from its header, before it is decoded."""
    size = image_size(path)
    if size is not None:
        try:
            engine.check_size(*size)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    return read_image(path)


def check_output_dir(path: str) -> str:
    """The absolute output folder, checked but not created (``make_parent`` creates folders
    when the first file is written, so a run that writes nothing leaves nothing): UserError
    if it is a file or cannot be created or written."""
    path, problem = folder_problem(path)
    if problem:
        raise UserError(f"{path}: output folder: {problem}")
    return path


def make_parent(path: str) -> str:
    """Create the folder of the file ``path`` (InputError if that fails); returns ``path``."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
    return path


def finish(failures: List[Tuple[str, str]], total: int, noun: str) -> int:
    """Exit status of a run (``modnet_jax.cliutil``): 0, or 1 after one line listing the
    skipped files."""
    if not failures:
        return 0
    print(f"error: skipped {len(failures)} of {total} {noun}: "
          + ", ".join(path for path, _ in failures), file=sys.stderr)
    return 1


def run_main(main_fn, argv: Optional[list]) -> int:
    """Call ``main_fn(argv)``, turning user errors into one ``error:`` line and exit code 2."""
    try:
        return main_fn(argv)
    except (UserError, CheckpointError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
