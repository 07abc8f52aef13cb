"""train.py's XLA:CPU kernel choice: set before JAX starts, never over the user's choice."""

import os
import subprocess
import sys

from modnet_jax.training import xla_cpu

_FRESH = r"""
import os, sys
from modnet_jax.training import xla_cpu
applied = xla_cpu.prefer_xla_kernels(sys.argv[1] == "on")
import jax, jax.numpy as jnp
x = jnp.ones((1, 8, 8, 4))
k = jnp.ones((3, 3, 4, 4))
grad = jax.grad(lambda k: jax.lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum())(k)
print(applied, os.environ.get("XLA_FLAGS", ""), float(grad.sum()), sep="\t")
"""


def _fresh(mode, xla_flags):
    env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _FRESH, mode], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().split("\t")


def test_flag_applied_in_a_fresh_process_and_xla_accepts_it():
    applied, flags, total = _fresh("on", "--xla_force_host_platform_device_count=2")
    assert applied == "True"
    assert flags == "--xla_force_host_platform_device_count=2 " + xla_cpu.FLAG
    # With x = 1, d sum(out) / d k[i, j, ci, co] counts the output pixels whose tap (i, j)
    # lands inside the 8x8 image ('SAME' padding): 7, 8 or 7 rows times 7, 8 or 7 columns.
    expected = 4 * 4 * sum(r * c for r in (7, 8, 7) for c in (7, 8, 7))
    assert float(total) == expected
    applied, flags, total_off = _fresh("off", "")
    assert applied == "False" and flags == "" and float(total_off) == expected


def test_user_choice_wins_and_late_calls_do_nothing(monkeypatch, caplog):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=conv")
    assert xla_cpu.prefer_xla_kernels() is False
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=conv"
    monkeypatch.setenv("XLA_FLAGS", xla_cpu.FLAG)
    assert xla_cpu.prefer_xla_kernels(enable=False) is True  # already the user's setting
    # In this process JAX has started (conftest): the flag could not take effect any more.
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    import jax

    jax.devices()
    with caplog.at_level("WARNING"):
        assert xla_cpu.prefer_xla_kernels() is False
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"
    assert any("not applied" in r.getMessage() for r in caplog.records)
