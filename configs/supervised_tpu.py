"""Supervised recipe on a TPU pod slice: bf16 compute, a 64-image global batch, lr x4.

  launch/tpu_pod.sh (runs python -m modnet_jax.train --config configs/supervised_tpu.py on
  every worker). Linear scaling: 4x the recipe's batch, 4x its lr.
"""

from modnet_jax.training.config import supervised_config


def get_config():
    c = supervised_config()
    c.model.dtype = "bfloat16"
    c.batch_size = 64
    c.optimizer.learning_rate = 0.04
    c.data.num_workers = 8
    return c
