"""The training configs shipped with the package, so ``--config NAME[:VARIANT]`` works from any
folder once modnet_jax is installed:

  supervised      the release recipe; variants quick (the README's first run), cpu, tiny
  soc             SOC adaptation of a trained model; variants cpu, tiny
  finetune        fine-tuning released weights (.onnx/.ckpt) on photos + mattes; cpu, tiny
  supervised_gpu  the recipe with bf16 compute and 8 data workers
  supervised_tpu  the recipe scaled to a TPU pod slice (batch 64, lr 0.04)

``configs/<name>.py`` in a clone of the repository points at the same modules, so
``--config configs/supervised.py:quick`` and ``--config supervised:quick`` are one config.
"""

from __future__ import annotations

import os
from typing import Optional

NAMES = ("supervised", "soc", "supervised_gpu", "supervised_tpu", "finetune")


def config_path(name: str) -> Optional[str]:
    """The file of the shipped config ``name`` (``supervised``, ``soc.py``...), or None."""
    stem = name[:-3] if name.endswith(".py") else name
    if stem not in NAMES:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), stem + ".py")


def unknown_variant(name: str, variant: str, variants: tuple = (),
                    plain: bool = True) -> ValueError:
    """The error a config's ``get_config`` raises for a variant it does not have."""
    if not variants:
        return ValueError(f"config {name!r} has no variants (got {variant!r}): use --config {name}")
    return ValueError(f"unknown variant {variant!r} of config {name!r}: use "
                      + ", ".join(f"{name}:{v}" for v in variants)
                      + (f" or {name} (the full recipe)" if plain else ""))
