"""Train/eval steps: 8-device pmap == 1 device, SOC invariants, learning on a fixed batch."""

import jax
import numpy as np
import optax
import pytest

from modnet_jax import parallel, state as state_lib, steps
from modnet_jax.models import init_variables, model_from_config

H = W = 64


def _batch(n, seed=0):
    """A uint8 pipeline-style batch: a bright disc (fg) on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    alpha = np.zeros((n, H, W, 1), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(10, 18)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        alpha[i, ..., 0] = np.clip((r - d) / 3 + 0.5, 0, 1)
    fg = np.broadcast_to(np.array([220, 180, 150], np.float32), (n, H, W, 3))
    bg = rng.uniform(0, 120, size=(n, H, W, 3)).astype(np.float32)
    image = fg * alpha + bg * (1 - alpha)
    a8 = np.round(alpha * 255).astype(np.uint8)
    trimap = np.where(a8 == 255, 255, np.where(a8 == 0, 0, 128)).astype(np.uint8)
    return {"image": np.round(image).astype(np.uint8), "alpha": a8, "trimap": trimap,
            "fg": fg.astype(np.uint8), "bg": bg.astype(np.uint8)}


@pytest.fixture(scope="module")
def setup():
    model = model_from_config(None, axis_name=parallel.AXIS)
    variables = init_variables(model_from_config(None), jax.random.key(0))
    return model, variables


def _run_supervised(model, variables, batch, devices, n_steps=1, tx=None):
    tx = tx or state_lib.make_optimizer(None, steps_per_epoch=100)
    st = parallel.replicate(state_lib.create_train_state(model, variables, tx), devices)
    step = steps.build_supervised_step(model, devices)
    history = []
    for _ in range(n_steps):
        st, metrics = step(st, parallel.shard_batch(batch, devices))
        history.append(float(parallel.unreplicate(metrics)["total"]))
    return parallel.unreplicate(st), history


def test_pmap_8_devices_equals_1_device(setup):
    """Same global batch, 8 devices vs 1: same loss, params and batch_stats after a step.

    Computed in float64: at initialisation, with 1-2 samples per BatchNorm, MODNet's gradients
    are so ill-conditioned that a 1e-7 relative perturbation of the weights moves the updated
    parameters by ~1e-3 in float32 (measured), so float32 reduction-order noise alone would
    break a 1e-5 comparison. In float64 that noise is ~1e-12 and any logic error (unsynced
    statistics, wrong gradient averaging) still shows at full size.
    """
    _, variables = setup
    batch = _batch(8)
    devices = jax.local_devices()
    assert len(devices) == 8
    with jax.enable_x64(True):
        model = model_from_config({"dtype": "float64"}, axis_name=parallel.AXIS)
        st8, h8 = _run_supervised(model, variables, batch, devices)
        st1, h1 = _run_supervised(model, variables, batch, devices[:1])
    np.testing.assert_allclose(h8, h1, rtol=1e-10)
    for name in ("params", "batch_stats"):
        a = jax.tree_util.tree_leaves(getattr(st8, name))
        b = jax.tree_util.tree_leaves(getattr(st1, name))
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-6, rtol=1e-6)
    # And the step did something: params moved away from their init.
    moved = [not np.array_equal(x, y) for x, y in zip(
        jax.tree_util.tree_leaves(st1.params), jax.tree_util.tree_leaves(variables["params"]))]
    assert sum(moved) > 0.9 * len(moved)
    assert int(st8.step) == 1


def test_supervised_learns_a_fixed_batch(setup):
    model, variables = setup
    batch = _batch(2, seed=1)
    tx = optax.adam(1e-3)
    _, history = _run_supervised(model, variables, batch, jax.local_devices()[:1], 30, tx)
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0], history


def test_soc_step_invariants_and_empty_band(setup):
    model, variables = setup
    devices = jax.local_devices()[:2]
    tx = state_lib.make_optimizer({"name": "adam", "learning_rate": 1e-4,
                                   "lr_decay_every_epochs": 0}, 1)
    step = steps.build_soc_step(model, devices)
    batch = {"image": _batch(2, seed=2)["image"]}

    def run(var):
        st = parallel.replicate(state_lib.create_train_state(model, var, tx), devices)
        frozen = state_lib.frozen_copy(st)
        frozen_before = jax.tree_util.tree_map(np.array, frozen)
        stats_before = jax.tree_util.tree_map(np.array, st.batch_stats)
        params_before = jax.tree_util.tree_map(np.array, st.params)
        st, metrics = step(st, frozen, parallel.shard_batch(batch, devices))
        for a, b in zip(jax.tree_util.tree_leaves(frozen_before),
                        jax.tree_util.tree_leaves(frozen)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(stats_before),
                        jax.tree_util.tree_leaves(st.batch_stats)):
            np.testing.assert_array_equal(a, b)
        changed = [not np.array_equal(a, b) for a, b in zip(
            jax.tree_util.tree_leaves(params_before), jax.tree_util.tree_leaves(st.params))]
        return parallel.unreplicate(metrics), changed, st

    metrics, changed, _ = run(variables)
    assert np.isfinite(metrics["total"]) and any(changed)

    # Force an all-background matte (final bias -30): every band is empty. The release NaNs.
    params = jax.tree_util.tree_map(np.array, variables["params"])
    params["f_branch"]["conv_f_1"]["layers_0"]["bias"][:] = -30.0
    metrics, _, st = run({"params": params, "batch_stats": variables["batch_stats"]})
    assert float(metrics["band_fraction"]) == 0.0
    assert np.isfinite(metrics["total"]) and np.isfinite(metrics["grad_norm"])
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(st.params))


def test_eval_step_metrics(setup):
    model, variables = setup
    devices = jax.local_devices()[:2]
    batch = _batch(2, seed=3)
    ev = steps.build_eval_step(model, devices)
    matte, metrics = ev(parallel.replicate(variables, devices),
                        parallel.shard_batch(batch, devices))
    matte = np.asarray(matte).reshape(2, H, W, 1)
    err = matte - batch["alpha"] / 255.0
    np.testing.assert_allclose(parallel.unreplicate(metrics)["mse"], np.mean(err ** 2), rtol=1e-5)
    np.testing.assert_allclose(parallel.unreplicate(metrics)["mad"], np.mean(np.abs(err)),
                               rtol=1e-5)


def test_device_batch_decoding():
    b = steps.device_batch({"image": np.array([0, 255], np.uint8).reshape(1, 1, 2, 1),
                            "trimap": np.array([0, 128, 255], np.uint8),
                            "alpha": np.array([0, 51, 255], np.uint8)})
    np.testing.assert_array_equal(b["image"].ravel(), [-1.0, 1.0])
    np.testing.assert_array_equal(b["trimap"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(b["alpha"], [0.0, 0.2, 1.0], rtol=1e-7)


def test_lr_schedule_and_errors(setup):
    sched = state_lib.learning_rate_schedule(None, steps_per_epoch=5)
    assert np.isclose(sched(0), 0.01) and np.isclose(sched(49), 0.01)
    assert np.isclose(sched(50), 0.001) and np.isclose(sched(100), 1e-4)
    with pytest.raises(ValueError, match="unknown optimizer"):
        state_lib.make_optimizer({"lr": 1.0}, 1)
    model, _ = setup
    with pytest.raises(ValueError, match="axis_name"):
        steps.build_supervised_step(model_from_config(None), jax.local_devices()[:1])
    with pytest.raises(ValueError, match="not divisible"):
        parallel.shard_batch({"x": np.zeros((3, 2))}, jax.local_devices()[:2])


def test_bfloat16_compute_keeps_fp32_params_and_statistics(setup):
    """Mixed precision (``model.dtype=bfloat16``): traced, not compiled, to check the types."""
    import jax.numpy as jnp

    _, variables = setup
    model = model_from_config({"dtype": "bfloat16"}, axis_name=parallel.AXIS)
    devices = jax.local_devices()[:1]
    tx = state_lib.make_optimizer(None, 100)
    st = state_lib.create_train_state(model, variables, tx)
    batch = {k: v[None] for k, v in _batch(2, seed=4).items()}
    step = steps.build_supervised_step(model, devices)
    new_st, metrics = jax.eval_shape(step, jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], st),
                                     batch)
    for tree in (new_st.params, new_st.batch_stats):
        assert {x.dtype for x in jax.tree_util.tree_leaves(tree)} == {jnp.dtype("float32")}
    assert metrics["total"].dtype == jnp.float32
    # The convolutions really run in bfloat16.
    hlo = jax.jit(lambda v, x: model_from_config({"dtype": "bfloat16"}).apply(
        v, x, train=False)).lower(variables, jnp.zeros((1, 64, 64, 3))).as_text()
    assert "bf16" in hlo and "convolution" in hlo
