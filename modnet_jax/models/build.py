"""Build a MODNet and its initial variables from a config (the model's small public API)."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp

from modnet_jax.models.modnet import MODNet

# Model fields a config may set (``config.model`` in the training configs), with defaults.
MODEL_DEFAULTS = dict(
    hr_channels=32,
    lr_branch="se",
    easpp_rates=(1, 2, 4, 8),
    depthwise_impl="auto",
    fast_paths="auto",
    dtype="float32",
    backbone_dtype="float32",
)

# Parameters the inference-only forward pass never touches (the semantic and detail heads).
TRAINING_ONLY_MODULES = (("lr_branch", "conv_lr"), ("hr_branch", "conv_hr_0"),
                         ("hr_branch", "conv_hr_1"))


def _get(cfg: Any, key: str):
    if cfg is None:
        return MODEL_DEFAULTS[key]
    if isinstance(cfg, Mapping):
        return cfg.get(key, MODEL_DEFAULTS[key])
    return getattr(cfg, key, MODEL_DEFAULTS[key])


def model_from_config(cfg: Any = None, axis_name: Optional[str] = None) -> MODNet:
    """A MODNet from a mapping / ConfigDict with the fields of ``MODEL_DEFAULTS`` (or None)."""
    unknown = set(dict(cfg) if cfg is not None else {}) - set(MODEL_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown model config fields {sorted(unknown)}; "
                         f"known: {sorted(MODEL_DEFAULTS)}")
    dtype = jnp.dtype(_get(cfg, "dtype"))
    return MODNet(
        hr_channels=int(_get(cfg, "hr_channels")),
        lr_branch=str(_get(cfg, "lr_branch")),
        easpp_rates=tuple(int(r) for r in _get(cfg, "easpp_rates")),
        axis_name=axis_name,
        depthwise_impl=str(_get(cfg, "depthwise_impl")),
        fast_paths=str(_get(cfg, "fast_paths")),
        dtype=dtype,
        backbone_dtype=jnp.dtype(_get(cfg, "backbone_dtype")),
    )


def init_variables(model: MODNet, rng: jax.Array, image_size: int = 64) -> dict:
    """{"params", "batch_stats"} for ``model``. Shapes do not depend on ``image_size``."""
    x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = jax.jit(lambda r: model.init(r, x, train=False))(rng)
    return dict(variables)


def create_model(cfg: Any = None, rng: Optional[jax.Array] = None,
                 axis_name: Optional[str] = None) -> Tuple[MODNet, dict]:
    """(model, variables) with the release's initialisation; ``rng`` defaults to key 0."""
    model = model_from_config(cfg, axis_name)
    rng = jax.random.key(0) if rng is None else rng
    return model, init_variables(model, rng)


def count_params(params: Any, inference_only: bool = False) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not parameters)."""
    if inference_only:
        params = {k: dict(v) for k, v in params.items()}
        for branch, name in TRAINING_ONLY_MODULES:
            params.get(branch, {}).pop(name, None)
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
