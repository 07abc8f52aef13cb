"""Test-wide JAX setup: 8 fake CPU devices (for pmap == 1-device invariants), fp32 math.

The XLA flag must be set before jax is imported anywhere, hence at conftest import time.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
