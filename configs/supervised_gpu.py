"""The shipped config `supervised_gpu` (modnet_jax/configs/supervised_gpu.py, where its recipe and variants are
documented): `--config configs/supervised_gpu.py[:VARIANT]` and `--config supervised_gpu[:VARIANT]` are the same."""

from modnet_jax.configs.supervised_gpu import get_config  # noqa: F401
