"""The shipped config `supervised_tpu` (modnet_jax/configs/supervised_tpu.py, where its recipe and variants are
documented): `--config configs/supervised_tpu.py[:VARIANT]` and `--config supervised_tpu[:VARIANT]` are the same."""

from modnet_jax.configs.supervised_tpu import get_config  # noqa: F401
