"""modnet_jax: MODNet trimap-free portrait matting in JAX/Flax (training, SOC, inference)."""

__version__ = "0.1.0"
