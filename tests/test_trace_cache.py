"""The trace cache (modnet_jax/inference/trace_cache.py): a stored trace runs without tracing
the Python program and gives the traced program's outputs bit for bit; what the trace depends
on picks the entry; a corrupt entry is traced again and replaced; off, it writes nothing.

Tiny shapes only: each new shape is a compile."""

import os
from functools import partial

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from modnet_jax.inference import programs, trace_cache
from modnet_jax.inference.programs import make_taps
from modnet_jax.inference.trace_cache import TraceCached

TRACED = []  # one entry each time Python traces ``scaled``


@partial(jax.jit, static_argnames=("scale",))
def _scaled(x, taps, offset, *, scale):
    TRACED.append(scale)
    return {"y": x * scale + offset, "w": (taps.weight.sum(0), taps.idx[0] + 1)}


def _canvas_args(h=20, w=30, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    return jax.device_put(image), make_taps(h, 16), make_taps(w, 24)


@pytest.fixture
def traces(tmp_path, monkeypatch):
    """The trace cache on, in a fresh folder."""
    where = tmp_path / "traces"
    monkeypatch.setattr(trace_cache, "folder", lambda: str(where))
    return where


def _fresh(program):
    """The program as a new process sees it: nothing in memory, only the stored entries."""
    return TraceCached(program.jitted, program.name)


def test_a_stored_trace_runs_without_tracing_and_gives_the_same_outputs(traces):
    args = (np.arange(6, dtype=np.float32).reshape(2, 3), make_taps(5, 3), 0.5)
    program = TraceCached(_scaled, "scaled")
    first = program(*args, scale=3.0)
    traced = len(TRACED)
    again = _fresh(program)(*args, scale=3.0)
    assert len(TRACED) == traced  # read back, not traced
    expected = _scaled(*args, scale=3.0)
    for got in (first, again):
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again["y"], np.arange(6).reshape(2, 3) * 3.0 + 0.5)


def test_the_real_resize_program_read_back_is_bit_equal(traces):
    args = _canvas_args()
    expected = np.asarray(programs.to_canvas.jitted(*args, canvas=(32, 32)))
    for _ in range(2):  # traced and stored, then read back
        got = np.asarray(_fresh(programs.to_canvas)(*args, canvas=(32, 32)))
        np.testing.assert_array_equal(got, expected)
    assert len(os.listdir(traces)) == 1


def test_a_different_static_argument_or_shape_gets_its_own_entry(traces):
    program = _fresh(programs.to_canvas)
    calls = [(_canvas_args(), (32, 32)), (_canvas_args(), (32, 48)),
             (_canvas_args(h=21), (32, 32))]
    for n, (args, canvas) in enumerate(calls, 1):
        got = program(*args, canvas=canvas)
        np.testing.assert_array_equal(got, programs.to_canvas.jitted(*args, canvas=canvas))
        assert len(os.listdir(traces)) == n
    program(*_canvas_args(seed=1), canvas=(32, 32))  # other pixels, same trace
    assert len(os.listdir(traces)) == 3


def test_a_corrupt_entry_is_traced_again_and_replaced(traces):
    args = _canvas_args()
    _fresh(programs.to_canvas)(*args, canvas=(32, 32))
    (entry,) = traces.iterdir()
    entry.write_bytes(b"not an export")
    got = _fresh(programs.to_canvas)(*args, canvas=(32, 32))
    np.testing.assert_array_equal(got, programs.to_canvas.jitted(*args, canvas=(32, 32)))
    assert [p.name for p in traces.iterdir()] == [entry.name]
    assert jax.export.deserialize(bytearray(entry.read_bytes())).fun_name


def test_the_trace_cache_lives_beside_the_compile_cache_and_is_off_with_it(tmp_path,
                                                                          monkeypatch):
    before = (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir)
    monkeypatch.delenv(trace_cache.ENV_VAR, raising=False)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax"))
    try:
        jax.config.update("jax_enable_compilation_cache", True)
        assert trace_cache.folder() == str(tmp_path / "jax-traces")
        monkeypatch.setenv(trace_cache.ENV_VAR, "off")
        assert trace_cache.folder() is None
        monkeypatch.delenv(trace_cache.ENV_VAR)
        jax.config.update("jax_enable_compilation_cache", False)  # --compile-cache none
        assert trace_cache.folder() is None
        args = _canvas_args()
        got = _fresh(programs.to_canvas)(*args, canvas=(32, 32))
    finally:
        jax.config.update("jax_enable_compilation_cache", before[0])
        jax.config.update("jax_compilation_cache_dir", before[1])
    np.testing.assert_array_equal(got, programs.to_canvas.jitted(*args, canvas=(32, 32)))
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.slow
def test_the_model_program_split_over_two_devices_read_back_is_bit_equal(untrained, traces):
    """The canvas model on a 2-device mesh: same mattes and the same split by frame."""
    model, variables, _ = untrained
    mesh = Mesh(np.array(jax.devices()[:2]), ("frames",))
    split, shared = NamedSharding(mesh, PartitionSpec("frames")), NamedSharding(mesh,
                                                                                PartitionSpec())
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32), split)
    sizes = jax.device_put(np.array([[64, 40], [48, 64]], np.int32), split)
    args = (jax.device_put(variables, shared), x, sizes)
    static = dict(model=model, masked=True, mesh=mesh)
    expected = programs.model_mattes.jitted(*args, **static)
    for _ in range(2):  # traced and stored, then read back
        got = _fresh(programs.model_mattes)(*args, **static)
        assert got.sharding.is_equivalent_to(expected.sharding, got.ndim)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
