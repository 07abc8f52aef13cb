"""The shipped config `supervised` (modnet_jax/configs/supervised.py, where its recipe and variants are
documented): `--config configs/supervised.py[:VARIANT]` and `--config supervised[:VARIANT]` are the same."""

from modnet_jax.configs.supervised import get_config  # noqa: F401
