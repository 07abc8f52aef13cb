"""The Flax MODNet: structure, sizes, modes, and the numerics of its building blocks.

Whole-model parity with the PyTorch release is tested in the interop tests; here each block
is checked against an independent numpy implementation of the PyTorch formula.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpy_reference import torch_bilinear

from modnet_jax.models import MODNet, count_params, create_model, model_from_config
from modnet_jax.models.layers import (
    BatchNorm,
    DepthwiseConv,
    IBNorm,
)
from modnet_jax.models.ops import (
    depthwise_conv_shifted,
    downsample_bilinear,
    upsample2x_bilinear,
)


@pytest.fixture(scope="module")
def model_and_vars():
    return create_model(rng=jax.random.key(0))


@pytest.fixture(scope="module")
def apply_fn(model_and_vars):
    model, _ = model_and_vars

    @jax.jit
    def run(variables, x):
        train_out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        eval_out = model.apply(variables, x, train=False)
        infer_out = model.apply(variables, x, train=False, inference=True)
        frozen_out, frozen_updates = model.apply(variables, x, train=True, freeze_bn=True,
                                                 mutable=["batch_stats"])
        return train_out, updates, eval_out, infer_out, frozen_out, frozen_updates

    return run


def _image(shape, seed=0):
    return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, -1.0, 1.0)


def test_parameter_counts(model_and_vars):
    model, variables = model_and_vars
    assert count_params(variables["params"]) == 6_487_075
    assert count_params(variables["params"], inference_only=True) == 6_476_609
    # The inference-only graph really creates exactly those parameters.
    infer_vars = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), inference=True))
    assert count_params(infer_vars["params"]) == 6_476_609
    # Split pinned from the release (docs/architecture.md, "Size and cost").
    p = variables["params"]
    assert count_params({"b": p["backbone"]}) == 2_223_872
    assert count_params({"h": p["hr_branch"]}) == 245_409
    assert count_params({"f": p["f_branch"]}) == 49_249
    assert count_params({"l": p["lr_branch"]}) == 3_968_545


def test_batch_stats_structure(model_and_vars):
    _, variables = model_and_vars
    stats = variables["batch_stats"]
    n_bn = len(jax.tree_util.tree_leaves(stats)) // 2
    # 52 BatchNorms in the backbone + 17 IBNorms in the heads = 69 (num_batches_tracked count).
    assert n_bn == 69
    for leaf in jax.tree_util.tree_leaves(stats):
        assert leaf.dtype == jnp.float32


@pytest.mark.parametrize("hw", [(512, 512), (480, 640), (64, 64), (32, 96)])
def test_output_shapes(model_and_vars, hw):
    model, variables = model_and_vars
    h, w = hw
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                         variables, jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32))
    sem, det, matte = out
    assert sem.shape == (2, h // 16, w // 16, 1)
    assert det.shape == (2, h, w, 1)
    assert matte.shape == (2, h, w, 1)
    assert matte.dtype == jnp.float32


def test_modes(model_and_vars, apply_fn):
    _, variables = model_and_vars
    x = _image((2, 64, 64, 3))
    train_out, updates, eval_out, infer_out, frozen_out, frozen_updates = apply_fn(variables, x)

    # Outputs are probabilities of the right shape.
    for y in train_out:
        assert np.all(np.asarray(y) >= 0) and np.all(np.asarray(y) <= 1)
    # Train mode updates every running statistic.
    old = jax.tree_util.tree_leaves(variables["batch_stats"])
    new = jax.tree_util.tree_leaves(updates["batch_stats"])
    changed = [not np.array_equal(a, b) for a, b in zip(old, new)]
    assert all(changed), f"{changed.count(False)} running statistics were not updated"
    # BN-frozen mode: statistics bit-unchanged, and BN uses the running averages (== eval).
    for a, b in zip(old, jax.tree_util.tree_leaves(frozen_updates["batch_stats"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(frozen_out[2], eval_out[2])
    # Eval differs from train (fresh running stats are 0/1, batch stats are not).
    assert not np.allclose(eval_out[2], train_out[2])
    # Inference switch: no semantic/detail heads, bit-identical matte.
    assert infer_out[0] is None and infer_out[1] is None
    np.testing.assert_array_equal(infer_out[2], eval_out[2])


def test_eval_mode_leaves_stats_untouched(model_and_vars):
    model, variables = model_and_vars
    _, updates = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["batch_stats"]))(
        variables, _image((1, 64, 64, 3)))
    # In eval mode nothing is written: the returned collection equals what went in.
    for a, b in zip(jax.tree_util.tree_leaves(variables["batch_stats"]),
                    jax.tree_util.tree_leaves(updates["batch_stats"])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hw", [(64, 48), (50, 64), (0, 32)])
def test_bad_input_size_is_a_clear_error(model_and_vars, hw):
    model, variables = model_and_vars
    with pytest.raises(ValueError, match="multiples of 32"):
        jax.eval_shape(lambda v, x: model.apply(v, x),
                       variables, jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32))


def test_bad_channels_is_a_clear_error(model_and_vars):
    model, variables = model_and_vars
    with pytest.raises(ValueError, match="3 input channels"):
        jax.eval_shape(lambda v, x: model.apply(v, x),
                       variables, jax.ShapeDtypeStruct((1, 64, 64, 4), jnp.float32))


def test_init_matches_release(model_and_vars):
    _, variables = model_and_vars
    p = variables["params"]
    # kaiming_uniform(fan_in, relu): U(-sqrt(6/fan_in), sqrt(6/fan_in)).
    k = np.asarray(p["lr_branch"]["conv_lr16x"]["layers_0"]["kernel"])  # 5x5x1280 -> 96
    bound = math.sqrt(6 / (5 * 5 * 1280))
    assert np.abs(k).max() <= bound
    assert abs(k.std() - bound / math.sqrt(3)) < 0.02 * bound
    dw = np.asarray(p["backbone"]["features_2"]["conv_3"]["kernel"])  # depthwise, fan_in 9
    assert dw.shape == (3, 3, 1, 96)
    assert np.abs(dw).max() <= math.sqrt(6 / 9) and np.abs(dw).max() > 0.6 * math.sqrt(6 / 9)
    np.testing.assert_array_equal(p["f_branch"]["conv_f_1"]["layers_0"]["bias"], 0.0)
    np.testing.assert_array_equal(p["backbone"]["features_0_1"]["scale"], 1.0)
    # SE Linears keep PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fc = np.asarray(p["lr_branch"]["se_block"]["fc_0"]["kernel"])
    assert fc.shape == (1280, 320)
    assert np.abs(fc).max() <= 1 / math.sqrt(1280)
    assert np.abs(fc).max() > 0.9 / math.sqrt(1280)


def test_easpp_variant():
    model, variables = create_model({"lr_branch": "easpp"}, jax.random.key(1))
    assert "easpp" in variables["params"]["lr_branch"]
    assert "se_block" not in variables["params"]["lr_branch"]
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
                         variables, jax.ShapeDtypeStruct((1, 96, 64, 3), jnp.float32))
    (sem, det, matte), _ = out
    assert sem.shape == (1, 6, 4, 1) and matte.shape == (1, 96, 64, 1)
    with pytest.raises(ValueError, match="lr_branch"):
        jax.eval_shape(lambda: MODNet(lr_branch="aspp").init(
            jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
    with pytest.raises(ValueError, match="unknown model config"):
        model_from_config({"hr_chanels": 16})
    # The implementation switches travel from the config to every layer that reads them.
    plain = model_from_config({"fast_paths": "off", "depthwise_impl": "xla"})
    assert (plain.fast_paths, plain.depthwise_impl) == ("off", "xla")
    assert model_from_config().fast_paths == "auto"
    with pytest.raises(ValueError, match="fast_paths"):
        jax.eval_shape(lambda: model_from_config({"fast_paths": "fast"}).init(
            jax.random.key(0), jnp.zeros((1, 64, 64, 3))))


# ---------------------------------------------------------------- building blocks vs numpy


@pytest.mark.parametrize("factor", [2, 4, 16])
def test_downsample_matches_torch_formula(factor):
    x = np.random.default_rng(0).normal(size=(2, 32, 48, 3)).astype(np.float32)
    ref = torch_bilinear(x, 32 // factor, 48 // factor)
    np.testing.assert_allclose(downsample_bilinear(jnp.asarray(x), factor), ref, atol=1e-6)
    if factor == 16:  # docs/architecture.md: x1/16 is the mean of pixels 16i+7 and 16i+8.
        np.testing.assert_allclose(ref[0, 1, 0, 0],
                                   x[0, 23:25, 7:9, 0].astype(np.float64).mean(), atol=1e-12)


def test_upsample_matches_torch_formula():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 3)).astype(np.float32)
    ref = torch_bilinear(x, 10, 14)
    np.testing.assert_allclose(upsample2x_bilinear(jnp.asarray(x)), ref, atol=1e-6)


def test_batchnorm_pytorch_update_rule():
    x = np.random.default_rng(2).normal(3.0, 2.0, size=(4, 5, 6, 8)).astype(np.float32)
    bn = BatchNorm()
    variables = bn.init(jax.random.key(0), x)
    y, upd = bn.apply(variables, x, mutable=["batch_stats"])
    mean = x.reshape(-1, 8).astype(np.float64).mean(0)
    var_b = x.reshape(-1, 8).astype(np.float64).var(0)
    n = 4 * 5 * 6
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var_b + 1e-5), atol=2e-5)
    np.testing.assert_allclose(upd["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(upd["batch_stats"]["var"], 0.9 + 0.1 * var_b * n / (n - 1),
                               rtol=1e-5)
    # Eval mode normalises with the running statistics.
    new_vars = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    y_eval = BatchNorm(use_running_average=True).apply(new_vars, x)
    rm, rv = 0.1 * mean, 0.9 + 0.1 * var_b * n / (n - 1)
    np.testing.assert_allclose(y_eval, (x - rm) / np.sqrt(rv + 1e-5), atol=2e-5)


def test_ibnorm_halves():
    x = np.random.default_rng(3).normal(1.0, 3.0, size=(2, 4, 4, 6)).astype(np.float32)
    ib = IBNorm()
    variables = ib.init(jax.random.key(0), x)
    y = np.asarray(ib.apply(variables, x, mutable=["batch_stats"])[0])
    xb = x[..., :3].astype(np.float64)
    bn_ref = (xb - xb.mean((0, 1, 2))) / np.sqrt(xb.var((0, 1, 2)) + 1e-5)
    xi = x[..., 3:].astype(np.float64)
    in_ref = (xi - xi.mean((1, 2), keepdims=True)) / np.sqrt(xi.var((1, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y[..., :3], bn_ref, atol=2e-5)
    np.testing.assert_allclose(y[..., 3:], in_ref, atol=2e-5)
    assert variables["batch_stats"]["bnorm"]["mean"].shape == (3,)


def test_batchnorm_pmap_equals_global_batch():
    n_dev = jax.local_device_count()
    assert n_dev == 8, "conftest should provide 8 CPU devices"
    x = np.random.default_rng(4).normal(2.0, 1.5, size=(n_dev * 2, 3, 3, 4)).astype(np.float32)
    bn_local, bn_global = BatchNorm(axis_name="d"), BatchNorm()
    variables = bn_global.init(jax.random.key(0), x)
    y_ref, upd_ref = bn_global.apply(variables, x, mutable=["batch_stats"])
    pm = jax.pmap(lambda v, xs: bn_local.apply(v, xs, mutable=["batch_stats"]), axis_name="d",
                  in_axes=(None, 0))
    y, upd = pm(variables, x.reshape(n_dev, 2, 3, 3, 4))
    np.testing.assert_allclose(np.asarray(y).reshape(x.shape), y_ref, atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(upd["batch_stats"][name][0], upd_ref["batch_stats"][name],
                                   rtol=1e-5)


def np_depthwise(x, k, stride, pad, dil):
    b, h, w, c = x.shape
    ks = k.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (h + 2 * pad - dil * (ks - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (ks - 1) - 1) // stride + 1
    out = np.zeros((b, ho, wo, c))
    for i in range(ks):
        for j in range(ks):
            out += xp[:, i * dil: i * dil + stride * (ho - 1) + 1: stride,
                      j * dil: j * dil + stride * (wo - 1) + 1: stride] * k[i, j, 0]
    return out


@pytest.mark.parametrize("stride,dil", [(1, 1), (2, 1), (1, 2), (1, 4)])
def test_depthwise_impls_agree(stride, dil):
    x = np.random.default_rng(5).normal(size=(2, 16, 12, 8)).astype(np.float32)
    outs = {}
    for impl in ("xla", "shifted"):
        mod = DepthwiseConv(3, stride, dil, impl=impl)
        variables = mod.init(jax.random.key(0), x)
        outs[impl] = np.asarray(mod.apply(variables, x))
    ref = np_depthwise(x, np.asarray(variables["params"]["kernel"]), stride, dil, dil)
    np.testing.assert_allclose(outs["xla"], ref, atol=1e-5)
    np.testing.assert_allclose(outs["shifted"], ref, atol=1e-5)
    assert outs["shifted"].shape == (2, (16 - 1) // stride + 1, (12 - 1) // stride + 1, 8)
    np.testing.assert_allclose(
        depthwise_conv_shifted(jnp.asarray(x), variables["params"]["kernel"], stride, dil, dil),
        outs["xla"], atol=1e-5)


def test_whole_model_depthwise_impls_agree(model_and_vars):
    _, variables = model_and_vars
    x = _image((2, 128, 128, 3), seed=7)
    # Summation order differs (~1e-7 per depthwise op); 52 BN/IN layers amplify that, most in
    # train mode where statistics come from the few pixels at 1/32 resolution.
    for train, atol in ((False, 2e-5), (True, 1e-4)):
        outs = []
        for impl in ("xla", "shifted"):
            model = model_from_config({"depthwise_impl": impl})
            outs.append(jax.jit(lambda v, x, m=model, t=train: m.apply(
                v, x, train=t, mutable=["batch_stats"]))(variables, x))
        for a, b in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1])):
            np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)
