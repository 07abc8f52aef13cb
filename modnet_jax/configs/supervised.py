"""Supervised MODNet training (the release's trainer and recipe).

Default (the paper/release recipe; needs a real dataset for real results):
  python -m modnet_jax.train --config supervised \
      --config.data.layout=adobe --config.data.root=/data/D646 --config.data.bg_root=/data/coco
  batch 16 at 512x512, SGD(momentum 0.9) lr 0.01 x0.1 every 10 epochs, 40 epochs. Without a
  dataset it trains on the embedded synthetic portraits (2,048 samples).

Variants (``--config supervised:NAME`` or ``configs/supervised.py:NAME``):
  quick  the README's first command: 96x96 synthetic portraits, batch 8, 300 steps, Adam 1e-3:
         minutes on a CPU, enough to see the validation MAD fall from the untrained model's
         (measured figures: docs/benchmarks.md).
  cpu    the recipe scaled to a CPU: 128x128, batch 8, 2,000 steps.
  tiny   seconds: 64x64, batch 2, 4 steps (tests, smoke checks).
"""

from modnet_jax.configs import unknown_variant
from modnet_jax.training.config import supervised_config, tiny

VARIANTS = ("quick", "cpu", "tiny")


def get_config(variant=None):
    c = supervised_config()
    if variant in (None, ""):
        return c
    if variant == "quick":
        c.image_size = 96
        c.batch_size = 8
        c.eval_batch_size = 8
        c.num_train_steps = 300
        c.log_every = 10
        c.eval_every = 0
        c.num_eval_batches = 8
        c.checkpoint_every = 100
        c.optimizer.name = "adam"
        c.optimizer.learning_rate = 1e-3
        c.optimizer.lr_decay_every_epochs = 0
        c.data.synthetic_size = 1024
        c.data.val_fraction = 1 / 16
        return c
    if variant == "cpu":
        c.image_size = 128
        c.batch_size = 8
        c.eval_batch_size = 8
        c.num_train_steps = 2000
        c.eval_every = 500
        c.checkpoint_every = 500
        c.num_eval_batches = 8
        return c
    if variant == "tiny":
        return tiny(c)
    raise unknown_variant("supervised", variant, VARIANTS)
