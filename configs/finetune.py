"""The shipped config `finetune` (modnet_jax/configs/finetune.py, where its recipe and variants are
documented): `--config configs/finetune.py[:VARIANT]` and `--config finetune[:VARIANT]` are the same."""

from modnet_jax.configs.finetune import get_config  # noqa: F401
