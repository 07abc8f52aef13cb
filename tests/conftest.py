"""Test-wide JAX setup, done before jax is imported anywhere (hence at conftest import time):

* 8 fake CPU devices, for the pmap == 1-device invariants;
* full fp32 matmul precision;
* XLA's own CPU conv kernels, as train.py chooses (modnet_jax/training/xla_cpu.py);
* a persistent compilation cache shared with the subprocesses the training tests start, so
  the same programs (model init, train/eval steps) compile once per machine instead of once
  per test or process (~40 s -> ~2 s each on a 2-core CPU);
* compiled programs released after each test module (``_release_compiled_programs``).

Everything is set through environment variables (not jax.config) so that subprocesses compile
identical programs and hit the same cache entries.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "modnet_jax_test_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402,F401  (imported here so the settings above are what it reads)
from modnet_jax.training import xla_cpu  # noqa: E402

# The XLA:CPU kernels train.py selects, here too: the training tests compare runs in this
# process with train.py subprocesses bit for bit.
xla_cpu.prefer_xla_kernels()


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's caches of compiled programs when a test module ends.

    XLA:CPU maps each compiled kernel into memory on its own (a MODNet train step with XLA's
    kernels adds ~2,400 memory mappings), and the mappings live as long as the program is
    cached. The whole suite in one process compiles enough programs to pass Linux's default
    limit of 65,530 mappings per process (``vm.max_map_count``); XLA then aborts the process
    (SIGABRT while writing a program to the persistent cache, in test_train.py), which lost
    the whole run. Programs a later module needs again come back from the persistent cache.
    """
    yield
    jax.clear_caches()
    gc.collect()


# Fixtures the engine and inference tests share (module-scoped: one model per test module).


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """(model, variables, checkpoint folder) of a freshly initialised release MODNet."""
    from modnet_jax.checkpointing import save_variables
    from modnet_jax.models import create_model

    model, variables = create_model()
    ckpt = save_variables(str(tmp_path_factory.mktemp("untrained")), variables)
    return model, variables, ckpt


@pytest.fixture(scope="module")
def engine(untrained, request):
    """A ``MattingEngine`` of ``untrained`` at the test module's ``REF`` size, batch 4."""
    from modnet_jax.inference import MattingEngine

    model, variables, _ = untrained
    return MattingEngine(model, variables, ref_size=request.module.REF, batch_size=4)
