"""XLA:CPU kernel choice for training runs (``train.py`` calls this before JAX starts).

XLA 0.10 hands CPU convolutions and dots to its YNNPACK fusions. For the kernel gradients
autodiff writes (a convolution whose window is the whole image, on transposed operands) those
are slow: in a profile of MODNet's batch-16 256x256 step they and the transposes feeding them
took ~41% of the time. ``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list) makes XLA
use its own kernels instead: the step took 4.3 s instead of 5.6-8.9 s on our 2-core machine
(benchmarks/RESULTS.md), with the same results up to fp32 rounding. Inference is mixed (batch
1 slower, batch 16 faster), so only training sets it. The flag is experimental and XLA aborts
on flags it does not know, so it is only set for the JAX versions it was measured on.
"""

from __future__ import annotations

import logging
import os

FLAG = "--xla_cpu_experimental_ynn_fusion_type="
_FLAG_NAME = FLAG.lstrip("-").split("=")[0]
MEASURED_JAX = ((0, 10), (0, 11))  # [from, to) major.minor

LOGGER = logging.getLogger(__name__)


def prefer_xla_kernels(enable: bool = True) -> bool:
    """Appends ``FLAG`` to ``XLA_FLAGS`` when ``enable``, unless ``XLA_FLAGS`` already names the
    flag (the user's choice wins), the JAX version was not measured, or JAX's backends have
    already started (then it could not take effect). Returns whether the flag is in effect."""
    current = os.environ.get("XLA_FLAGS", "")
    if _FLAG_NAME in current:
        return FLAG in current.split()
    if not enable:
        return False
    import jax

    if not MEASURED_JAX[0] <= tuple(jax.__version_info__[:2]) < MEASURED_JAX[1]:
        return False
    if jax_started():
        LOGGER.warning("JAX already started: %s not applied", FLAG)
        return False
    os.environ["XLA_FLAGS"] = f"{current} {FLAG}".strip()
    return True


def jax_started() -> bool:
    """Whether JAX's backends have started (after which XLA_FLAGS is not read again). Public
    API only: ``jax_num_cpu_devices`` may change only before the start, so a change and its
    undoing succeed exactly while JAX has not started."""
    import jax

    current = jax.config.jax_num_cpu_devices
    try:
        jax.config.update("jax_num_cpu_devices", current + 1 if current > 0 else 1)
    except RuntimeError:
        return True
    jax.config.update("jax_num_cpu_devices", current)
    return False
