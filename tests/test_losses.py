"""Losses against the numpy/scipy referee of the release's formulas (tests/numpy_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import numpy_reference as ref
from modnet_jax import losses


def _inputs(seed=0, b=2, h=64, w=96):
    rng = np.random.default_rng(seed)
    gt = np.clip(rng.uniform(-0.5, 1.5, size=(b, h, w, 1)), 0, 1).astype(np.float32)
    tri = np.full_like(gt, 0.5)
    tri[gt == 0] = 0.0
    tri[gt == 1] = 1.0
    return dict(
        ps=rng.uniform(size=(b, h // 16, w // 16, 1)).astype(np.float32),
        pd=rng.uniform(size=(b, h, w, 1)).astype(np.float32),
        pm=rng.uniform(size=(b, h, w, 1)).astype(np.float32),
        img=rng.uniform(-1, 1, size=(b, h, w, 3)).astype(np.float32),
        tri=tri, gt=gt,
        fg=rng.uniform(size=(b, h, w, 3)).astype(np.float32),
        bg=rng.uniform(size=(b, h, w, 3)).astype(np.float32),
    )


def test_blur_kernel_pinned():
    k = losses.GAUSSIAN_3X3
    np.testing.assert_allclose(k[0, 0], 0.06261057, atol=1e-8)
    np.testing.assert_allclose(k[0, 1], 0.12499990, atol=1e-8)
    np.testing.assert_allclose(k[1, 1], 0.24955813, atol=1e-8)
    np.testing.assert_allclose(k.sum(), 1.0, atol=1e-6)
    # And it is scipy's sigma-0.8 Gaussian filter of a 3x3 delta (tails reflected back in).
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    np.testing.assert_allclose(k, ndimage.gaussian_filter(delta, 0.8), atol=1e-7)


def test_blur_matches_reference():
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(losses.gaussian_blur(jnp.asarray(x)), ref.blur(x), atol=1e-6)


def test_supervised_release_matches_reference():
    d = _inputs()
    out = losses.supervised_loss(d["ps"], d["pd"], d["pm"], d["img"], d["tri"], d["gt"])
    l_s, l_d, l_a = ref.supervised_release(d["ps"], d["pd"], d["pm"], d["img"], d["tri"],
                                           d["gt"])
    np.testing.assert_allclose(out["semantic"], l_s, rtol=1e-5)
    np.testing.assert_allclose(out["detail"], l_d, rtol=1e-5)
    np.testing.assert_allclose(out["matte"], l_a, rtol=1e-5)
    np.testing.assert_allclose(out["total"], l_s + l_d + l_a, rtol=1e-5)


def test_supervised_release_is_zero_at_the_target():
    d = _inputs(seed=3)
    gt_s = np.asarray(losses.semantic_target(jnp.asarray(d["gt"])))
    out = losses.supervised_loss(gt_s, d["gt"], d["gt"], d["img"], d["tri"], d["gt"])
    np.testing.assert_allclose(out["total"], 0.0, atol=1e-7)


def test_supervised_paper_matches_reference():
    d = _inputs(seed=2)
    out = losses.supervised_loss(d["ps"], d["pd"], d["pm"], d["img"], d["tri"], d["gt"],
                                 variant="paper", fg=d["fg"], bg=d["bg"])
    l_s, l_d, l_a = ref.supervised_paper(d["ps"], d["pd"], d["pm"], d["img"], d["tri"], d["gt"],
                                         d["fg"], d["bg"])
    np.testing.assert_allclose(out["semantic"], l_s, rtol=1e-5)
    np.testing.assert_allclose(out["detail"], l_d, rtol=1e-5)
    np.testing.assert_allclose(out["matte"], l_a, rtol=1e-5)
    # Without fg/bg the compositional term is dropped.
    no_comp = losses.supervised_loss(d["ps"], d["pd"], d["pm"], d["img"], d["tri"], d["gt"],
                                     variant="paper")
    np.testing.assert_allclose(no_comp["matte"], np.mean(np.abs(d["pm"] - d["gt"])), rtol=1e-5)
    with pytest.raises(ValueError, match="variant"):
        losses.supervised_loss(d["ps"], d["pd"], d["pm"], d["img"], d["tri"], d["gt"],
                               variant="dim")


@pytest.mark.parametrize("size", [3, 4, 5, 8])
def test_grey_morphology_matches_scipy(size):
    x = (np.random.default_rng(size).uniform(size=(2, 11, 13, 1)) > 0.7).astype(np.float32)
    x[1] *= np.random.default_rng(9).uniform(size=(11, 13, 1)).astype(np.float32)
    dil = np.asarray(losses.grey_dilation(jnp.asarray(x), size))
    ero = np.asarray(losses.grey_erosion(jnp.asarray(x), size))
    for i in range(2):
        np.testing.assert_array_equal(dil[i, ..., 0],
                                      ndimage.grey_dilation(x[i, ..., 0], size=(size, size)))
        np.testing.assert_array_equal(ero[i, ..., 0],
                                      ndimage.grey_erosion(x[i, ..., 0], size=(size, size)))


def _soc_inputs(seed=0, b=3, h=64, w=64):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2).astype(np.float32)
    pm = np.clip(disc[None, ..., None] * rng.uniform(0.6, 1.0, size=(b, h, w, 1))
                 + rng.uniform(0, 0.15, size=(b, h, w, 1)), 0, 1).astype(np.float32)
    ps = rng.uniform(0, 1, size=(b, h // 16, w // 16, 1)).astype(np.float32)
    pm[-1] = 0.05  # the last sample has no foreground at all: an empty band
    return dict(ps=ps, pd=rng.uniform(size=pm.shape).astype(np.float32), pm=pm,
                fd=rng.uniform(size=pm.shape).astype(np.float32),
                fm=rng.uniform(size=pm.shape).astype(np.float32))


def test_soc_band_matches_release():
    d = _soc_inputs()
    band = np.asarray(losses.soc_boundary_band(jnp.asarray(d["ps"]), jnp.asarray(d["pm"])))
    np.testing.assert_array_equal(band, ref.soc_band(d["ps"], d["pm"]))
    assert band[0].sum() > 0 and band[-1].sum() == 0
    assert losses.soc_band_width(512, 512) == 25


def test_soc_matches_reference_and_survives_empty_band():
    d = _soc_inputs()
    out = losses.soc_loss(d["ps"], d["pd"], d["pm"], d["fd"], d["fm"])
    l_s, l_d = ref.soc(d["ps"], d["pd"], d["pm"], d["fd"], d["fm"])
    np.testing.assert_allclose(out["semantic"], l_s, rtol=1e-5)
    np.testing.assert_allclose(out["detail"], l_d, rtol=1e-5)

    # All bands empty: finite loss and finite gradients (the release returns NaN).
    empty = {k: v for k, v in d.items()}
    empty["pm"] = np.full_like(d["pm"], 0.05)
    grads = jax.grad(lambda ps, pd, pm: losses.soc_loss(ps, pd, pm, empty["fd"],
                                                        empty["fm"])["total"],
                     argnums=(0, 1, 2))(empty["ps"], empty["pd"], empty["pm"])
    total = losses.soc_loss(empty["ps"], empty["pd"], empty["pm"], empty["fd"], empty["fm"])
    assert np.isfinite(total["total"]) and float(total["detail"]) == 0.0
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_soc_global_mean_under_pmap():
    # 4 devices x 1 sample, one of them with an empty band: pmean of the device losses equals
    # the loss of the whole batch on one device.
    d = _soc_inputs(seed=5, b=4)
    d["pm"][1] = 0.05
    whole = losses.soc_loss(d["ps"], d["pd"], d["pm"], d["fd"], d["fm"])
    f = jax.pmap(lambda *a: jax.lax.pmean(losses.soc_loss(*a, axis_name="i")["total"], "i"),
                 axis_name="i", devices=jax.local_devices()[:4])
    per_dev = [d[k].reshape((4, 1) + d[k].shape[1:]) for k in ("ps", "pd", "pm", "fd", "fm")]
    np.testing.assert_allclose(np.asarray(f(*per_dev))[0], whole["total"], rtol=1e-5)
