"""Matting metrics against values computed by hand on tiny arrays."""

import math

import numpy as np
import pytest

from modnet_jax import metrics


PRED = np.array([[0.0, 0.5], [1.0, 1.0]])
GT = np.array([[0.0, 1.0], [0.5, 0.0]])  # |diff| = 0, 0.5, 0.5, 1


def test_mse_mad_sad_whole_image():
    assert metrics.mse(PRED, GT) == pytest.approx((0 + 0.25 + 0.25 + 1) / 4)
    assert metrics.mad(PRED, GT) == pytest.approx(2.0 / 4)
    assert metrics.sad(PRED, GT) == pytest.approx(2.0 / 1000)


def test_mse_mad_sad_masked_and_channel_axis():
    mask = np.array([[True, True], [False, False]])
    assert metrics.mse(PRED[..., None], GT, mask) == pytest.approx(0.25 / 2)
    assert metrics.mad(PRED, GT[..., None], mask) == pytest.approx(0.5 / 2)
    assert metrics.sad(PRED, GT, mask) == pytest.approx(0.5 / 1000)


def test_uint8_is_read_on_0_255_scale():
    pred = np.array([[255, 0]], np.uint8)
    gt = np.array([[1.0, 0.2]])
    assert metrics.mad(pred, gt) == pytest.approx(0.1)


def test_empty_mask_and_shape_errors():
    empty = np.zeros((2, 2), bool)
    assert math.isnan(metrics.mse(PRED, GT, empty))
    assert math.isnan(metrics.mad(PRED, GT, empty))
    assert metrics.sad(PRED, GT, empty) == 0.0
    with pytest.raises(ValueError, match="shape"):
        metrics.mad(PRED, GT[:1])


def test_unknown_mask_float_and_uint8_trimaps():
    want = np.array([[False, True, False]])
    assert (metrics.unknown_mask(np.array([[0.0, 0.5, 1.0]])) == want).all()
    assert (metrics.unknown_mask(np.array([[0, 128, 255]], np.uint8)) == want).all()


def test_trimap_from_alpha_band():
    gt = np.zeros((9, 9))
    gt[3:6, 3:6] = 1.0
    trimap = metrics.trimap_from_alpha(gt, radius=1)
    # fg eroded by a 3x3 window: only the centre; not_bg dilated: rows/cols 2..6.
    assert trimap[4, 4] == 1.0
    assert (trimap == 1.0).sum() == 1
    assert (trimap == 0.5).sum() == 25 - 1
    assert trimap[0, 0] == 0.0 and trimap[2, 2] == 0.5


def test_gaussian_kernels_normalisation():
    w, d = metrics.gaussian_kernels(1.4)
    assert len(w) == 11  # r = ceil(3 * 1.4) = 5
    assert w.sum() == pytest.approx(1.0)
    taps = np.arange(-5, 6)
    assert np.dot(d, taps) == pytest.approx(1.0)  # derivative of the ramp f(x) = x is 1


def test_gradient_of_ramps_and_offsets():
    x = np.tile(np.arange(30, dtype=np.float64), (20, 1))
    interior = np.zeros(x.shape, bool)
    interior[:, 5:25] = True  # away from the replicated left/right borders
    g_mag = metrics.gaussian_gradient_magnitude(0.02 * x)
    assert np.allclose(g_mag[interior], 0.02)
    want = interior.sum() * (0.02 - 0.01) ** 2 / 1000
    assert metrics.gradient_error(0.02 * x, 0.01 * x, interior) == pytest.approx(want)
    # A constant offset changes MAD but not the gradient error.
    flat = np.full((20, 30), 0.2)
    assert metrics.gradient_error(flat + 0.3, flat) == pytest.approx(0.0, abs=1e-15)
    assert metrics.mad(flat + 0.3, flat) == pytest.approx(0.3)


def test_gradient_of_a_step_edge_by_hand():
    # Step 0 -> 1 between columns 9 and 10. Both neighbours of the edge see
    # S = sum_{k=1..5} k e_k / (2 sum_{k=1..5} k^2 e_k), e_k = exp(-k^2 / (2 * 1.4^2)).
    k = np.arange(1, 6)
    e = np.exp(-k ** 2 / (2 * 1.4 ** 2))
    s = np.sum(k * e) / (2 * np.sum(k ** 2 * e))
    step = np.zeros((15, 20))
    step[:, 10:] = 1.0
    mag = metrics.gaussian_gradient_magnitude(step)
    assert mag[7, 9] == pytest.approx(s) and mag[7, 10] == pytest.approx(s)
    mask = np.zeros(step.shape, bool)
    mask[7, 9] = True
    assert metrics.gradient_error(step, np.zeros_like(step), mask) == pytest.approx(s ** 2 / 1000)


def _block_with_pixel(pixel):
    gt = np.zeros((5, 7))
    gt[1:4, 1:4] = 1.0
    pred = gt.copy()
    gt[pixel] = 1.0
    pred[pixel] = 0.9
    return pred, gt


def test_connectivity_identical_is_zero():
    pred, gt = _block_with_pixel((4, 4))
    assert metrics.connectivity_error(gt, gt) == 0.0


def test_connectivity_diagonal_neighbour_is_connected():
    # (4, 4) touches the block's corner (3, 3) diagonally: 8-connected, it leaves the largest
    # component only at t = 1.0, so l = 0.9: phi(a) = 1 (d = 0), phi(g) = 1 (d = 0.1 < 0.15).
    pred, gt = _block_with_pixel((4, 4))
    assert metrics.connectivity_levels(pred, gt)[4, 4] == pytest.approx(0.9)
    assert metrics.connectivity_error(pred, gt) == pytest.approx(0.0)


def test_connectivity_isolated_pixel():
    # (4, 6) is apart from the block: not in the largest component from t = 0.1, so l = 0;
    # phi(a) = 1 - 0.9 = 0.1, phi(g) = 1 - 1 = 0: error 0.1 / 1000.
    pred, gt = _block_with_pixel((4, 6))
    levels = metrics.connectivity_levels(pred, gt)
    assert levels[4, 6] == 0.0 and levels[2, 2] == 1.0 and levels[0, 0] == 0.0
    assert metrics.connectivity_error(pred, gt) == pytest.approx(0.1 / 1000)
    mask = np.zeros(gt.shape, bool)
    mask[:, :5] = True
    assert metrics.connectivity_error(pred, gt, mask) == 0.0


def test_connectivity_threshold_sweep_by_hand():
    # Row a = [.35, .35, .8], g = 1: all connected up to t = 0.3; at 0.4 only pixel 2 remains
    # (l = 0.3 for pixels 0, 1); pixel 2 leaves at 0.9 (l = 0.8).
    # d_a = [.05, .05, 0] -> phi_a = 1; d_g = [.7, .7, .2] -> phi_g = [.3, .3, .8].
    pred = np.array([[0.35, 0.35, 0.8]])
    gt = np.ones((1, 3))
    assert np.allclose(metrics.connectivity_levels(pred, gt), [[0.3, 0.3, 0.8]])
    assert metrics.connectivity_error(pred, gt) == pytest.approx(1.6 / 1000)


def test_compute_and_average_metrics():
    row = metrics.compute_metrics(PRED, GT)
    assert set(row) == set(metrics.METRIC_NAMES)
    assert row["mad"] == pytest.approx(0.5)
    rows = [{"mse": 1.0, "mad": float("nan"), "sad": 1, "grad": 0, "conn": 0},
            {"mse": 3.0, "mad": 0.5, "sad": 3, "grad": 0, "conn": 2}]
    avg = metrics.average_metrics(rows)
    assert avg == {"mse": 2.0, "mad": 0.5, "sad": 2.0, "grad": 0.0, "conn": 1.0}
