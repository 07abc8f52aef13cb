"""Pieces shared by the ``predict``, ``evaluate`` and ``serve`` commands: the engine they build
from their options (``options.py``), JAX's persistent compilation cache, the CPU split into
devices, output folders and errors."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any, List, Optional, Tuple

from modnet_jax.checkpointing import model_config_for
from modnet_jax.cliutil import folder_problem
from modnet_jax.inference.checkpoint import CheckpointError
from modnet_jax.interop.release_files import model_config_for_release, release_kind
from modnet_jax.inference.engine import MattingEngine
from modnet_jax.inference.images import InputError, image_size, read_image
from modnet_jax.inference.options import COMPILE_CACHE_ENV as ENV_VAR
from modnet_jax.inference.options import OFD_THRESHOLD, default_cache_dir

DEVICE_FLAG = "--xla_force_host_platform_device_count"
LOGGER = logging.getLogger(__name__)


def setup_compile_cache(cache_dir: Optional[str] = None) -> Optional[str]:
    """Turn JAX's persistent compilation cache on, so that a second run with the same input
    sizes compiles nothing; returns the folder, or None when off. The folder: ``cache_dir``
    (``--compile-cache``), else ``$MODNET_JAX_COMPILE_CACHE``, else one JAX was already given
    (``JAX_COMPILATION_CACHE_DIR``), else ``default_cache_dir()``; "none" turns it off."""
    import jax

    choice = cache_dir if cache_dir is not None else os.environ.get(ENV_VAR)
    if choice is not None and choice.strip().lower() in ("none", "off", "0", ""):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    folder = (os.path.abspath(os.path.expanduser(choice)) if choice
              else jax.config.jax_compilation_cache_dir or default_cache_dir())
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_enable_compilation_cache", True)
    # Keep every program, the small resize programs too (JAX's default skips those < 1 s).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def split_host_cpu(count: Optional[int] = None) -> int:
    """Ask, before JAX starts, for ``count`` CPU devices (default: 2 where there are 2 or more
    cores, else 1); returns the count in effect. Why: on XLA:CPU one MODNet call does not keep
    every core busy and two calls on one device run one after the other; split in two, the
    engine runs one photo, or its share of a video batch, on each device at the same time
    (benchmarks/RESULTS.md). A count already in ``XLA_FLAGS`` (the user's choice) wins; once
    JAX has started the split cannot change (then 1, with a warning)."""
    current = os.environ.get("XLA_FLAGS", "")
    match = re.search(DEVICE_FLAG + r"=(\d+)", current)
    if match:
        return int(match.group(1))
    if count is None:
        count = 2 if len(os.sched_getaffinity(0)) >= 2 else 1
    if count <= 1:
        return 1
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:  # the backends have started
        LOGGER.warning("JAX already started: %d CPU devices not applied", count)
        return 1
    return int(count)


def inference_devices() -> List[Any]:
    """The devices photos and video batches are split over: every local device of JAX's
    default backend (the CPU devices of ``split_host_cpu``, or every local GPU)."""
    import jax

    return list(jax.local_devices())


def default_video_batch(devices) -> int:
    """Video frames per model call: one per device on a CPU (larger batches were slower per
    frame there), 8 on a GPU/TPU, where batching is what fills the chip."""
    devices = list(devices)
    return len(devices) if devices[0].platform == "cpu" else 8


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
