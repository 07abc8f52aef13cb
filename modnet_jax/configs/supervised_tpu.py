"""Supervised recipe on a TPU pod slice: bf16 compute, a 64-image global batch, lr x4.

  launch/tpu_pod.sh (runs python -m modnet_jax.train --config supervised_tpu on
  every worker). Linear scaling: 4x the recipe's batch, 4x its lr.
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import supervised_config


def get_config(variant=None):
    if variant:
        raise unknown_variant("supervised_tpu", variant)
    c = supervised_config()
    c.model.dtype = "bfloat16"
    c.batch_size = 64
    c.optimizer.learning_rate = 0.04
    c.data.num_workers = 8
    return c
