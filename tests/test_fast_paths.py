"""Every fast path computes what the plain path computes (issue 9: speed without new numbers).

The fast paths (``fast_paths='on'``, and ``depthwise_impl='shifted'`` with its hand-written
gradient) reorder sums, so float32 results differ from the plain path by rounding only. Each is
checked in float64, where that rounding is ~1e-13 and any logic error (a wrong shift, a
missed border, statistics over the wrong pixels) is O(1), for values, gradients and BatchNorm
running statistics; float32 agreement is checked at the whole-model level. The plain path
itself must stay bit-identical to ``flax.linen.Conv`` (checkpoints and interop depend on it),
and switching the fast paths on or off never changes the variables.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from modnet_jax.losses import supervised_loss
from modnet_jax.models import create_model
from modnet_jax.models.layers import (
    BatchNorm,
    Conv2d,
    DepthwiseConv,
    IBNorm,
    resolve_fast_paths,
)
from modnet_jax.models.ops import conv_upsampled, depthwise_conv_shifted, upsample2x_bilinear
from modnet_jax.models.mobilenetv2 import InvertedResidual
from modnet_jax.models.modnet import MODNet

TIGHT = 1e-10  # float64: rounding ~1e-13, a real mistake is O(1)


def _rand(shape, seed, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _max_diff(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(leaves_a, leaves_b))


def _same_tree(a, b):
    def names_and_shapes(tree):
        return [(jax.tree_util.keystr(p), np.shape(x))
                for p, x in jax.tree_util.tree_leaves_with_path(tree)]

    assert names_and_shapes(a) == names_and_shapes(b)


def test_auto_means_cpu_and_bad_mode_is_an_error():
    assert resolve_fast_paths("auto") == (jax.default_backend() == "cpu")
    assert resolve_fast_paths("on") and not resolve_fast_paths("off")
    with pytest.raises(ValueError, match="fast_paths"):
        resolve_fast_paths("fast")


# ------------------------------------------------------------------------------ Conv2d


def test_plain_conv2d_is_flax_conv_bit_for_bit():
    x = _rand((2, 12, 10, 35), 0, np.float32)
    ref = nn.Conv(16, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="layers_0",
                  kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "uniform"))
    mine = Conv2d(16, 3, 2, name="layers_0")
    v_ref = ref.init(jax.random.key(3), x)
    v_mine = mine.init(jax.random.key(3), (x[..., :32], x[..., 32:]))
    _same_tree(v_ref, v_mine)
    assert _max_diff(v_ref, v_mine) == 0.0  # same names -> same RNG streams -> same init
    np.testing.assert_array_equal(ref.apply(v_ref, x),
                                  mine.apply(v_mine, (x[..., :32], x[..., 32:])))


@pytest.mark.parametrize("widths,stride,kernel", [((32, 3), 1, 3), ((3, 32), 2, 3),
                                                   ((64, 32, 3), 1, 3), ((32, 32), 1, 3),
                                                   ((24,), 1, 1), ((16, 3, 8), 1, 5)])
def test_split_concat_conv_equals_plain(widths, stride, kernel):
    with jax.enable_x64(True):
        parts = tuple(jnp.asarray(_rand((2, 8, 12, w), i)) for i, w in enumerate(widths))
        plain = Conv2d(7, kernel, stride, fast=False, dtype=jnp.float64)
        fast = Conv2d(7, kernel, stride, fast=True, dtype=jnp.float64)
        variables = plain.init(jax.random.key(0), parts)
        _same_tree(variables, fast.init(jax.random.key(0), parts))

        @jax.jit
        def both(v, xs):
            return [(m.apply(v, xs), jax.grad(lambda v, xs, m=m: jnp.sum(jnp.sin(m.apply(v, xs))),
                                              argnums=(0, 1))(v, xs)) for m in (plain, fast)]

        out_plain, out_fast = both(variables, parts)
        assert _max_diff(out_plain, out_fast) < TIGHT


def test_conv_upsampled_value_and_gradients():
    with jax.enable_x64(True):
        x = jnp.asarray(_rand((2, 4, 6, 40), 1))
        kernel = jnp.asarray(_rand((5, 5, 40, 3), 2, scale=0.1))

        def plain(x, k):
            y = upsample2x_bilinear(x)
            return jax.lax.conv_general_dilated(y, k, (1, 1), ((2, 2), (2, 2)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

        cot = jnp.asarray(_rand((2, 8, 12, 3), 3))

        @jax.jit
        def both(x, k):
            return [(f(x, k), jax.vjp(f, x, k)[1](cot)) for f in (plain, conv_upsampled)]

        out_plain, out_fast = both(x, kernel)
        assert out_fast[0].shape == (2, 8, 12, 3)
        assert _max_diff(out_plain, out_fast) < TIGHT


def test_conv2d_upsample_switch():
    """Conv2d(upsample=True): C_in >= 8 C_out takes conv_upsampled, else split convs."""
    with jax.enable_x64(True):
        for c_in, c_out in ((64, 8), (16, 8)):
            x = jnp.asarray(_rand((1, 4, 4, c_in), c_in))
            plain = Conv2d(c_out, 5, upsample=True, fast=False, dtype=jnp.float64)
            fast = Conv2d(c_out, 5, upsample=True, fast=True, dtype=jnp.float64)
            variables = plain.init(jax.random.key(1), x)

            @jax.jit
            def both(v, x):
                return [(m.apply(v, x), jax.grad(lambda v, x, m=m: jnp.sum(m.apply(v, x) ** 2),
                                                 argnums=(0, 1))(v, x)) for m in (plain, fast)]

            assert _max_diff(*both(variables, x)) < TIGHT


# ------------------------------------------------------------------------- depthwise


@pytest.mark.parametrize("stride,dilation,hw", [(1, 1, (9, 12)), (2, 1, (12, 10)),
                                                (2, 1, (11, 9)), (1, 2, (10, 10)),
                                                (1, 4, (12, 12))])
def test_depthwise_shifted_gradient_equals_xla(stride, dilation, hw):
    with jax.enable_x64(True):
        x = jnp.asarray(_rand((2, *hw, 5), 4))
        variables = {"params": {"kernel": jnp.asarray(_rand((3, 3, 1, 5), 5))}}

        def value_and_vjp(f, *args):
            y, vjp = jax.vjp(f, *args)
            return y, vjp(jnp.cos(y))

        @jax.jit
        def runs(v, x):
            mods = [DepthwiseConv(3, stride, dilation, impl=impl, dtype=jnp.float64)
                    for impl in ("xla", "shifted")]
            k = v["params"]["kernel"]
            # Also the function form with explicit padding 0 (as the masked block uses it).
            unpadded = [lambda x, k: jax.lax.conv_general_dilated(
                x, k, (stride, stride), ((0, 0), (0, 0)), rhs_dilation=(dilation, dilation),
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=5),
                lambda x, k: depthwise_conv_shifted(x, k, stride, 0, dilation)]
            return ([value_and_vjp(lambda v, x, m=m: m.apply(v, x), v, x) for m in mods],
                    [value_and_vjp(f, x, k) for f in unpadded])

        same_padding, no_padding = runs(variables, x)
        assert _max_diff(*same_padding) < TIGHT
        assert _max_diff(*no_padding) < TIGHT


# ---------------------------------------------------------------------------- norms


def _norm_runs(module, variables, x):
    """(train output, updated stats, eval output, gradient wrt x and params) of a norm."""
    (y, upd) = module.apply(variables, x, mutable=["batch_stats"])
    eval_mod = module.clone(use_running_average=True)
    y_eval = eval_mod.apply({"params": variables["params"], "batch_stats": upd["batch_stats"]}, x)
    grads = jax.grad(lambda v, x: jnp.sum(jnp.sin(module.apply(v, x, mutable=["batch_stats"])[0])),
                     argnums=(0, 1))(variables, x)
    return y, upd, y_eval, grads


def test_fused_ibnorm_equals_ibnorm():
    with jax.enable_x64(True):
        x = jnp.asarray(_rand((3, 5, 7, 10), 6, scale=2.0) + 1.5)
        plain = IBNorm(fused=False, dtype=jnp.float64)
        fused = IBNorm(fused=True, dtype=jnp.float64)
        variables = plain.init(jax.random.key(0), x)
        _same_tree(variables, fused.init(jax.random.key(0), x))
        variables = {"params": jax.tree_util.tree_map(
            lambda p: p + jnp.asarray(_rand(p.shape, 7, scale=0.3)), variables["params"]),
            "batch_stats": variables["batch_stats"]}
        runs = jax.jit(lambda v, x: [_norm_runs(m, v, x) for m in (plain, fused)])
        assert _max_diff(*runs(variables, x)) < TIGHT


def test_fused_ibnorm_pmap_equals_global_batch():
    n_dev = jax.local_device_count()
    x = _rand((n_dev * 2, 4, 3, 6), 8, np.float32) * 1.5 + 2.0
    ref = IBNorm(fused=True)
    variables = ref.init(jax.random.key(0), x)
    y_ref, upd_ref = ref.apply(variables, x, mutable=["batch_stats"])
    local = IBNorm(axis_name="d", fused=True)
    pm = jax.pmap(lambda v, xs: local.apply(v, xs, mutable=["batch_stats"]), axis_name="d",
                  in_axes=(None, 0))
    y, upd = pm(variables, x.reshape(n_dev, 2, 4, 3, 6))
    np.testing.assert_allclose(np.asarray(y).reshape(x.shape), y_ref, atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(upd["batch_stats"]["bnorm"][name][0],
                                   upd_ref["batch_stats"]["bnorm"][name], rtol=1e-5)


def test_batchnorm_stats_border_ignores_the_margin():
    with jax.enable_x64(True):
        x = jnp.asarray(_rand((2, 6, 5, 4), 9) + 3.0)
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=100.0)
        variables = BatchNorm(dtype=jnp.float64).init(jax.random.key(0), x)
        y, upd = BatchNorm(dtype=jnp.float64).apply(variables, x, mutable=["batch_stats"])
        yp, updp = BatchNorm(dtype=jnp.float64, stats_border=1).apply(
            variables, xp, mutable=["batch_stats"])
        assert _max_diff(y, yp[:, 1:-1, 1:-1]) < TIGHT
        assert _max_diff(upd, updp) < TIGHT


@pytest.mark.parametrize("train", [True, False])
def test_masked_stride2_block_equals_plain(train):
    with jax.enable_x64(True):
        x = jnp.asarray(_rand((2, 8, 10, 16), 10))
        kw = dict(out_channels=24, stride=2, expansion=6, use_running_average=not train,
                  depthwise_impl="shifted", dtype=jnp.float64)
        plain, fast = InvertedResidual(**kw, fast_paths="off"), InvertedResidual(**kw,
                                                                                fast_paths="on")
        variables = plain.init(jax.random.key(2), x)
        _same_tree(variables, fast.init(jax.random.key(2), x))
        # Non-trivial running statistics for eval mode.
        variables = {"params": variables["params"], "batch_stats": jax.tree_util.tree_map(
            lambda s: s + jnp.abs(jnp.asarray(_rand(s.shape, 11, scale=0.2))),
            variables["batch_stats"])}

        def run(m, v, x):
            (y, upd) = m.apply(v, x, mutable=["batch_stats"])
            g = jax.grad(lambda v, x: jnp.sum(jnp.sin(m.apply(v, x, mutable=["batch_stats"])[0])),
                         argnums=(0, 1))(v, x)
            return y, upd, g

        runs = jax.jit(lambda v, x: [run(m, v, x) for m in (plain, fast)])
        assert _max_diff(*runs(variables, x)) < TIGHT


# ----------------------------------------------------------------------- whole model


def _batch(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    b, h, w, _ = shape
    image = rng.uniform(-1, 1, shape)
    alpha = np.clip(rng.uniform(-0.5, 1.5, (b, h, w, 1)), 0, 1)
    trimap = np.where(alpha >= 1, 1.0, np.where(alpha <= 0, 0.0, 0.5))
    return [jnp.asarray(a, dtype) for a in (image, trimap, alpha)]


@pytest.fixture(scope="module")
def release_init():
    return create_model({"depthwise_impl": "xla"}, rng=jax.random.key(0))[1]


def _model_train(model, variables, image):
    """Train-mode outputs and running statistics after the step."""
    outs, upd = model.apply(variables, image, train=True, mutable=["batch_stats"])
    return outs, upd["batch_stats"]


def _model_grads(model, variables, image, trimap, alpha):
    """Gradients of the supervised loss wrt every parameter (train mode)."""

    def loss_fn(params):
        (sem, det, matte), _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, image, train=True,
            mutable=["batch_stats"])
        return supervised_loss(sem, det, matte, image, trimap, alpha)["total"]

    return jax.grad(loss_fn)(variables["params"])


PLAIN = dict(fast_paths="off", depthwise_impl="xla")
FAST = dict(fast_paths="on", depthwise_impl="shifted")


def _float64_runs(variables, fn, shape):
    with jax.enable_x64(True):
        variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
        batch = _batch(shape, 12, jnp.float64)
        return [jax.jit(lambda v, *b, m=MODNet(dtype=jnp.float64, **kw): fn(m, v, *b))(
            variables, *batch) for kw in (PLAIN, FAST)]


def test_whole_model_fast_paths_equal_plain_float64(release_init):
    """All fast paths on (and the shifted depthwise) vs the plain path, float64: train-mode
    outputs (semantic, detail, matte) and every updated running statistic."""
    plain, fast = _float64_runs(release_init, lambda m, v, image, *_: _model_train(m, v, image),
                                (2, 64, 96, 3))
    assert _max_diff(plain, fast) < 1e-9


@pytest.mark.slow
def test_whole_model_fast_paths_gradients_float64(release_init):
    """Every parameter gradient of the supervised loss, fast vs plain, float64 (two large
    compiles; the pieces' gradients are checked above in the fast tests)."""
    plain, fast = _float64_runs(release_init, _model_grads, (2, 64, 96, 3))
    assert _max_diff(plain, fast) < 1e-9


def test_whole_model_fast_paths_float32_and_same_variables(release_init):
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    shapes = [jax.eval_shape(lambda x, m=MODNet(**kw): m.init(jax.random.key(0), x), x)
              for kw in (PLAIN, FAST)]
    _same_tree(*shapes)  # values follow (same names, shapes and init functions)
    _same_tree(shapes[0], release_init)
    image = _batch((2, 128, 96, 3), 13, jnp.float32)[0]
    infer = [jax.jit(lambda v, x, m=MODNet(**kw): m.apply(v, x, train=False, inference=True)[2])(
        release_init, image) for kw in (PLAIN, FAST)]
    # Rounding differences of ~1e-7 per op, amplified by the ~70 normalisation layers.
    np.testing.assert_allclose(infer[1], infer[0], atol=2e-5)
