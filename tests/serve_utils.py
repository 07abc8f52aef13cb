"""What the server tests share: a tiny random-weight checkpoint and a server on a free port."""

from __future__ import annotations

import numpy as np

REF = 64  # small model inputs keep the compiles short


def tiny_checkpoint(folder: str) -> str:
    """An SE, hr_channels=8 MODNet with random weights saved with its record (abstract init:
    nothing compiled). The mattes are noise; the serving plumbing is what is checked."""
    from modnet_jax import checkpointing
    from modnet_jax.models.random_weights import random_variables

    cfg = {"lr_branch": "se", "hr_channels": 8}
    variables = random_variables(0, cfg)
    return checkpointing.save_variables(folder, variables, model_config=cfg)


def model_argv(checkpoint: str) -> list:
    """predict's model options for the tiny model, shared by the server and predict runs
    (exact shapes: both compile the same programs, the persistent cache serves the second)."""
    return ["--checkpoint", checkpoint, "--ref-size", str(REF), "--exact-shapes"]


def start_server(checkpoint: str, *extra: str):
    """(Server, base URL) of ``python -m modnet_jax.serve``'s server, in a thread."""
    from modnet_jax.serve.__main__ import build_parser, check_args
    from modnet_jax.serve.server import Server

    args = build_parser().parse_args(model_argv(checkpoint) + ["--ref-sizes", ""] + list(extra))
    server = Server.from_args(args, check_args(args))
    return server, server.start()


def photo(height: int = 48, width: int = 64, seed: int = 1) -> np.ndarray:
    """A smooth RGB test picture (compresses well, so JPEG round trips stay close)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
