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
from modnet_jax.inference.compile_cache import setup_compile_cache
from modnet_jax.inference.engine import MattingEngine
from modnet_jax.inference.images import InputError, image_size, read_image
from modnet_jax.inference.options import OFD_THRESHOLD, add_model_args  # noqa: F401 (serve uses it from here)


class UserError(Exception):
    """Ends a command with ``error: <message>`` on one line and a non-zero exit status."""


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
