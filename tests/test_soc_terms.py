"""SOC's extra pieces: the neighbouring-frame term and the recipes' parameter masks, against
hand-computed values."""

import jax.numpy as jnp
import numpy as np
import pytest

from modnet_jax import losses
from modnet_jax.training.soc_recipes import (RECIPES, Recipe, adapt_mask, make_soc_update,
                                             restrict)


def test_temporal_consistency_hand_value():
    # 3 frames of 1x2 pixels; grey levels -> the model's [-1, 1] input
    grey = np.array([[[10, 10], [50, 50]],      # frame 0
                     [[12, 10], [90, 50]],      # frame 1: px0 moved 2 (still), px1 moved 40
                     [[12, 10], [90, 56]]],     # frame 2: px0 still, px1 moved 6 (> 4)
                    np.float32)[:, None]        # [3, 1, 2, 2]: H=1, W=2, C=2 channels
    image = grey / 127.5 - 1.0
    matte = np.array([0.2, 0.9, 0.5, 0.7, 0.4, 0.6], np.float32).reshape(3, 1, 2, 1)
    # pair (0,1): px0 still (max change 2 <= 4): |0.5-0.2| = 0.3; px1 not still
    # pair (1,2): px0 still: |0.4-0.5| = 0.1; px1 changed 6 in one channel: not still
    got = float(losses.temporal_consistency(jnp.asarray(matte), jnp.asarray(image)))
    assert got == pytest.approx((0.3 + 0.1) / 2, abs=1e-6)
    # a stricter threshold leaves no still pixel in pair (0,1)
    got = float(losses.temporal_consistency(jnp.asarray(matte), jnp.asarray(image), 1.0))
    assert got == pytest.approx(0.1, abs=1e-6)
    assert float(losses.temporal_consistency(jnp.asarray(matte[:1]), jnp.asarray(image[:1]))) == 0


def _toy_params():
    w = lambda *s: np.ones(s, np.float32)  # noqa: E731
    return {"backbone": {"conv": {"kernel": w(2)}, "bn": {"scale": w(2), "bias": w(2)}},
            "lr_branch": {"conv": {"kernel": w(3)}},
            "hr_branch": {"conv": {"kernel": w(2), "bias": w(2)}, "bn": {"scale": w(1),
                                                                          "bias": w(1)}}}


def test_adapt_masks():
    p = _toy_params()
    low = adapt_mask(p, "lowres")
    assert low["backbone"]["conv"]["kernel"] and low["lr_branch"]["conv"]["kernel"]
    assert not low["hr_branch"]["conv"]["kernel"] and not low["hr_branch"]["bn"]["scale"]
    bn = adapt_mask(p, "bn_affine")
    assert bn["backbone"]["bn"]["scale"] and bn["hr_branch"]["bn"]["bias"]
    assert not bn["backbone"]["conv"]["kernel"] and not bn["hr_branch"]["conv"]["bias"]
    with pytest.raises(ValueError):
        adapt_mask(p, "everything")


@pytest.mark.parametrize("adapt", ["all", "lowres", "bn_affine"])
def test_only_what_adapts_moves(adapt):
    """The trainer's ``restrict`` and the benchmark's masked update (learning rate from the
    recipe) both give Adam's first step, lr * sign(-g), on what adapts and 0 elsewhere."""
    import jax
    import optax

    p = _toy_params()
    grads = jax.tree.map(lambda x: np.full_like(x, -2.0), p)
    mask = adapt_mask(p, adapt)
    tx = restrict(optax.adam(1e-3, b1=0.9, b2=0.99), adapt)
    restricted, _ = tx.update(grads, tx.init(p), p)
    init, _ = make_soc_update(model=None)
    bench_tx = optax.inject_hyperparams(optax.adam)(learning_rate=1.0, b1=0.9, b2=0.99)
    opt_state, weights = init(Recipe(lr=1e-3, adapt=adapt), p)
    masked, _ = bench_tx.update(grads, opt_state, p)
    masked = jax.tree.map(lambda u, w: u * w, masked, weights)
    for m, a, b in zip(jax.tree.leaves(mask), jax.tree.leaves(restricted),
                       jax.tree.leaves(masked)):
        np.testing.assert_allclose(a, 1e-3 if m else 0.0, rtol=1e-5)
        np.testing.assert_allclose(b, 1e-3 if m else 0.0, rtol=1e-5)


def test_recipes_are_the_documented_ones():
    assert RECIPES["release"] == Recipe(lr=1e-5, adapt="all")
    assert RECIPES["paper"].lr == 1e-4 and RECIPES["paper"].adapt == "all"


def test_config_variants_select_the_recipes():
    from modnet_jax.configs.soc import get_config

    for name in ("release", "paper", "lowres", "bn_affine"):
        c = get_config(name)
        assert (c.optimizer.learning_rate, c.soc.adapt) == (RECIPES[name].lr,
                                                           RECIPES[name].adapt)
        assert c.optimizer.name == "adam" and c.optimizer.b2 == 0.99 and c.batch_size == 1
    assert (get_config().optimizer.learning_rate, get_config().soc.adapt) == (1e-4, "bn_affine")
