"""MODNet and its MobileNetV2 encoder as Flax linen modules (no files, no loop, no torch)."""

from modnet_jax.models.build import (
    MODEL_DEFAULTS,
    count_params,
    create_model,
    init_variables,
    model_from_config,
)
from modnet_jax.models.mobilenetv2 import MobileNetV2
from modnet_jax.models.modnet import MODNet

__all__ = [
    "MODEL_DEFAULTS",
    "MODNet",
    "MobileNetV2",
    "count_params",
    "create_model",
    "init_variables",
    "model_from_config",
]
