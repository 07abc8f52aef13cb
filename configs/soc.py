"""The shipped config `soc` (modnet_jax/configs/soc.py, where its recipe and variants are
documented): `--config configs/soc.py[:VARIANT]` and `--config soc[:VARIANT]` are the same."""

from modnet_jax.configs.soc import get_config  # noqa: F401
