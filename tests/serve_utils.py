"""What the server tests share: a tiny random-weight checkpoint and a server on a free port."""

from __future__ import annotations

import numpy as np

REF = 64  # small model inputs keep the compiles short


def tiny_checkpoint(folder: str) -> str:
    """An SE, hr_channels=8 MODNet with random weights saved with its record (abstract init:
    nothing compiled). The mattes are noise; the serving plumbing is what is checked."""
    import jax

    from modnet_jax import checkpointing
    from modnet_jax.models import model_from_config

    cfg = {"lr_branch": "se", "hr_channels": 8}
    shapes = jax.eval_shape(lambda: model_from_config(cfg).init(
        jax.random.key(0), jax.numpy.zeros((1, 64, 64, 3)), train=False))
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map(
        lambda a: (rng.normal(0, 0.1, a.shape) if a.ndim else rng.normal()).astype(a.dtype),
        {"params": shapes["params"], "batch_stats": shapes["batch_stats"]})
    variables["batch_stats"] = jax.tree_util.tree_map(lambda v: np.abs(v) + 0.5,
                                                      variables["batch_stats"])
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
