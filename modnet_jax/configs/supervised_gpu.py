"""Supervised recipe on GPUs: bf16 compute (fp32 params and BN statistics), 8 data workers.

  python -m modnet_jax.train --config supervised_gpu --config.data.root=...
Global batch stays 16 (the recipe); scale it with the device count and the lr linearly
(see docs/scaling.md).
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import supervised_config


def get_config(variant=None):
    if variant:
        raise unknown_variant("supervised_gpu", variant)
    c = supervised_config()
    c.model.dtype = "bfloat16"
    c.data.num_workers = 8
    return c
