"""The model on a zero-padded canvas (models.canvas) equals the model on each image alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modnet_jax.models import MODNet
from modnet_jax.models.canvas import Canvas, canvas_apply

CANVAS = (96, 160)
SIZES = [(64, 96), (32, 64)]  # a corner, and the smallest legal size (1 x 2 at stride 32)


def randomised(variables, seed):
    """The variables with every BatchNorm statistic, scale and bias and every conv bias drawn at
    random (they are 0 or 1 at init, which could hide a missing mask: the padding must not
    stay zero by luck); the kernels keep their well-scaled init."""
    paths, tree = jax.tree_util.tree_flatten_with_path(variables)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(paths))
    out = []
    for key, (path, x) in zip(keys, paths):
        noise = 0.1 * jax.random.normal(key, x.shape, x.dtype)
        name = str(path[-1])
        if "scale" in name or "var" in name:
            x = 1.0 + jnp.abs(noise)
        elif "bias" in name or "mean" in name:
            x = noise
        out.append(x)
    return jax.tree.unflatten(tree, out)


def test_canvas_helpers_by_hand():
    x = jnp.arange(2 * 4 * 6 * 1, dtype=jnp.float32).reshape(2, 4, 6, 1) + 1.0
    canvas = Canvas.of([(64, 96), (128, 64)], 128, 192)  # stride 32 at this 4x6 map
    inside = np.asarray(canvas.inside(x))[..., 0]
    want = np.zeros((2, 4, 6), bool)
    want[0, :2, :3] = True
    want[1, :4, :2] = True
    np.testing.assert_array_equal(inside, want)
    xs = np.asarray(x)[..., 0]
    np.testing.assert_array_equal(np.asarray(canvas.mask(x))[..., 0], np.where(want, xs, 0))
    np.testing.assert_allclose(np.asarray(canvas.mean(x))[:, 0],
                               [xs[0, :2, :3].mean(), xs[1, :4, :2].mean()], rtol=1e-6)
    ext = np.asarray(canvas.extend(x))[..., 0]
    np.testing.assert_array_equal(ext[0], xs[0][np.minimum(np.arange(4), 1)][:, np.minimum(
        np.arange(6), 2)])
    np.testing.assert_array_equal(ext[1], xs[1][:, np.minimum(np.arange(6), 1)])
    with pytest.raises(ValueError, match="not a stride"):
        canvas.valid(jnp.zeros((2, 4, 5, 1)))


@pytest.mark.parametrize("fast_paths,lr_branch", [("on", "se"), ("off", "easpp")])
def test_canvas_model_equals_the_model_on_each_image_alone(fast_paths, lr_branch):
    model = MODNet(fast_paths=fast_paths, lr_branch=lr_branch)
    variables = randomised(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))), 1)
    rng = np.random.default_rng(0)
    images = [rng.uniform(-1, 1, (h, w, 3)).astype(np.float32) for h, w in SIZES]
    x = np.full((len(SIZES),) + CANVAS + (3,), 7.0, np.float32)  # junk past each image
    for i, im in enumerate(images):
        x[i, :im.shape[0], :im.shape[1]] = im
    run = jax.jit(lambda v, x, s: canvas_apply(model, v, x, s, inference=True)[2][..., 0])
    out = np.asarray(run(variables, x, np.array(SIZES, np.int32)))
    # The same canvases claimed whole (the padding zeroed): what the model sees without masks.
    blind = np.asarray(run(variables, np.where(np.abs(x) > 1, 0, x),
                           np.array([CANVAS] * len(SIZES), np.int32)))
    plain = jax.jit(lambda v, x: model.apply(v, x, inference=True)[2][..., 0])
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        want = np.asarray(plain(variables, im[None]))[0]
        assert want.std() > 0.02  # a matte with structure, not a constant
        # float32 summation order only: XLA's CPU conv kernels (the tests run them) block the
        # sums by shape, ~1e-5 apart here; a missing mask costs > 1e-2 (below).
        np.testing.assert_allclose(out[i, :h, :w], want, rtol=0, atol=3e-5,
                                   err_msg=f"{fast_paths} {lr_branch} {SIZES[i]}")
        assert np.abs(blind[i, :h, :w] - want).max() > 1e-2  # so the test can fail


def test_canvas_is_refused_with_batch_statistics():
    model = MODNet()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="inference only"):
        canvas_apply(model, variables, jnp.zeros((1, 64, 64, 3)), [(64, 64)], train=True,
                     mutable=["batch_stats"])
