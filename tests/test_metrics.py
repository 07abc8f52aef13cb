"""Matting metrics: hand-computed values on tiny arrays and independent scipy references."""

import math

import numpy as np
import pytest
from scipy import ndimage

from modnet_jax import metrics
from modnet_jax.inference.images import matte_to_uint8


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


# ------------------------------------------------------------ independent references
# Written from the definitions (DIM evaluation code conventions), with scipy only.

def reference_grad(pred, gt, mask=None, sigma=1.4):
    """Grad: 2-D filter built tap by tap, unit L2 norm, scipy correlate with edge replication."""
    def normalise(x):
        x = np.asarray(x, np.float64)
        return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)

    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 0.01)))
    gauss = lambda t: math.exp(-t * t / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))
    fx = np.array([[gauss(i) * (-j * gauss(j) / sigma ** 2) for j in range(-half, half + 1)]
                   for i in range(-half, half + 1)])
    fx /= np.sqrt((fx ** 2).sum())

    def magnitude(x):
        return np.hypot(ndimage.correlate(x, fx, mode="nearest"),
                        ndimage.correlate(x, fx.T, mode="nearest"))

    err = (magnitude(normalise(pred)) - magnitude(normalise(gt))) ** 2
    return err[np.ones(err.shape, bool) if mask is None else mask].sum() / 1000


def reference_conn(pred, gt, mask=None):
    """Conn: scipy.ndimage.label's default structure is the 4-neighbourhood."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    level = np.full(gt.shape, -1.0)
    for k in range(1, 11):
        labels, count = ndimage.label((pred >= k / 10) & (gt >= k / 10))
        omega = np.zeros(gt.shape, bool)
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            omega = labels == 1 + np.argmax(sizes)
        level[(level == -1) & ~omega] = (k - 1) / 10
    level[level == -1] = 1.0
    phi = lambda x: 1 - (x - level) * ((x - level) >= 0.15)
    err = np.abs(phi(pred) - phi(gt))
    return err[np.ones(err.shape, bool) if mask is None else mask].sum() / 1000


def blobby_pair(seed, shape=(48, 64)):
    """A soft blob matte, a distorted prediction of it, and some islands in both."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    r = np.hypot((yy - shape[0] / 2) / (shape[0] / 3), (xx - shape[1] / 2) / (shape[1] / 3))
    gt = np.clip(1.5 - r, 0, 1)
    gt[rng.random(shape) < 0.02] = 1.0
    pred = np.clip(gt + ndimage.gaussian_filter(rng.normal(0, 0.3, shape), 1.5), 0, 1)
    pred[rng.random(shape) < 0.02] = 0.0
    # A checkerboard touching the top of the core: 8-connected to it, but not 4-connected.
    checker = (yy + xx) % 2 == 0
    checker[:4] = checker[14:] = False
    gt[checker] = pred[checker] = 1.0
    return pred, gt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grad_and_conn_match_independent_references(seed):
    pred, gt = blobby_pair(seed)
    mask = metrics.unknown_mask(metrics.trimap_from_alpha(gt, radius=3))
    for m in (None, mask):
        want_grad = reference_grad(pred, gt, m)
        assert want_grad > 0
        assert metrics.gradient_error(pred, gt, m) == pytest.approx(want_grad, rel=1e-5)
        want_conn = reference_conn(pred, gt, m)
        assert want_conn > 0
        assert metrics.connectivity_error(pred, gt, m) == pytest.approx(want_conn, rel=1e-12)


def test_gradient_kernels_are_the_unit_norm_factors_of_the_9x9_filter():
    smooth, deriv = metrics.gradient_kernels(1.4)
    assert len(smooth) == len(deriv) == 9  # half width ceil(3.62) = 4
    assert np.linalg.norm(smooth) == pytest.approx(1.0)
    assert np.linalg.norm(deriv) == pytest.approx(1.0)
    assert np.linalg.norm(np.outer(smooth, deriv)) == pytest.approx(1.0)


def test_gradient_of_a_ramp_by_hand():
    # A ramp of slope 1 per pixel has |grad| = |sum_k k d_k| * sum_k s_k with the unit-norm
    # factors s_k ~ e_k, d_k ~ k e_k, e_k = exp(-k^2 / (2 * 1.4^2)), k = -4..4.
    k = np.arange(-4, 5)
    e = np.exp(-k ** 2 / (2 * 1.4 ** 2))
    unit = np.sum(k * k * e) / np.sqrt(np.sum((k * e) ** 2)) * np.sum(e) / np.sqrt(np.sum(e ** 2))
    assert unit == pytest.approx(9.68, abs=0.01)
    assert metrics.UNIT_RAMP_GRADIENT == pytest.approx(unit)
    ramp = np.tile(np.arange(31, dtype=np.float64), (20, 1))  # min-max normalised: slope 1/30
    mag = metrics.gaussian_gradient_magnitude(ramp / 30)
    assert np.allclose(mag[:, 4:27], unit / 30, rtol=1e-5)  # away from the replicated borders
    # Grad against a flat matte (normalised to 0 everywhere) over an interior window.
    window = np.zeros(ramp.shape, bool)
    window[:, 4:27] = True
    assert metrics.gradient_error(ramp, np.full(ramp.shape, 0.3), window) == pytest.approx(
        window.sum() * (unit / 30) ** 2 / 1000, rel=1e-5)


def test_gradient_of_a_step_edge_by_hand():
    # Step 0 -> 1 between columns 9 and 10: the pixels on both sides see
    # |sum_{k=1..4} d_k| * sum_k s_k (half of the derivative taps straddle the edge).
    k = np.arange(-4, 5)
    e = np.exp(-k ** 2 / (2 * 1.4 ** 2))
    s = np.sum((k * e)[5:]) / np.sqrt(np.sum((k * e) ** 2)) * np.sum(e) / np.sqrt(np.sum(e ** 2))
    step = np.zeros((15, 20))
    step[:, 10:] = 1.0
    mag = metrics.gaussian_gradient_magnitude(step)
    assert mag[7, 9] == pytest.approx(s, rel=1e-6) and mag[7, 10] == pytest.approx(s, rel=1e-6)
    assert mag[7, 5] == pytest.approx(0, abs=1e-6) and mag[7, 14] == pytest.approx(0, abs=1e-6)
    mask = np.zeros(step.shape, bool)
    mask[7, 9] = True
    assert metrics.gradient_error(step, np.zeros_like(step), mask) == pytest.approx(
        s ** 2 / 1000, rel=1e-6)


def test_grad_ignores_offset_and_contrast_but_mad_does_not():
    pred, gt = blobby_pair(5)
    assert metrics.gradient_error(0.5 * gt + 0.2, gt) == pytest.approx(0.0, abs=1e-9)
    assert metrics.gradient_error(np.full((8, 8), 0.4), np.zeros((8, 8))) == 0.0
    assert metrics.mad(0.5 * gt + 0.2, gt) > 0.05


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


def test_connectivity_edge_neighbour_is_connected():
    # (4, 3) touches the block's pixel (3, 3) by an edge: 4-connected, it leaves the largest
    # component only at t = 1.0, so l = 0.9: phi(a) = 1 (d = 0), phi(g) = 1 (d = 0.1 < 0.15).
    pred, gt = _block_with_pixel((4, 3))
    assert metrics.connectivity_levels(pred, gt)[4, 3] == pytest.approx(0.9)
    assert metrics.connectivity_error(pred, gt) == pytest.approx(0.0)


def test_connectivity_diagonal_neighbour_is_not_connected():
    # (4, 4) touches the block's corner (3, 3) only diagonally: with 4-connectivity it is its
    # own component from t = 0.1, so l = 0; phi(a) = 1 - 0.9 = 0.1, phi(g) = 1 - 1 = 0.
    pred, gt = _block_with_pixel((4, 4))
    levels = metrics.connectivity_levels(pred, gt)
    assert levels[4, 4] == 0.0 and levels[2, 2] == 1.0 and levels[0, 0] == 0.0
    assert metrics.connectivity_error(pred, gt) == pytest.approx(0.1 / 1000)
    mask = np.zeros(gt.shape, bool)
    mask[:, :4] = True
    assert metrics.connectivity_error(pred, gt, mask) == 0.0


def test_connectivity_threshold_sweep_by_hand():
    # Row a = [.35, .35, .8], g = 1: all connected up to t = 0.3; at 0.4 only pixel 2 remains
    # (l = 0.3 for pixels 0, 1); pixel 2 leaves at 0.9 (l = 0.8).
    # d_a = [.05, .05, 0] -> phi_a = 1; d_g = [.7, .7, .2] -> phi_g = [.3, .3, .8].
    pred = np.array([[0.35, 0.35, 0.8]])
    gt = np.ones((1, 3))
    assert np.allclose(metrics.connectivity_levels(pred, gt), [[0.3, 0.3, 0.8]])
    assert metrics.connectivity_error(pred, gt) == pytest.approx(1.6 / 1000)
    # Nothing above the first threshold: every pixel has l = 0.
    assert (metrics.connectivity_levels(np.zeros((3, 3)), gt.repeat(3, 0)) == 0).all()


def test_8bit_precision_scores_rounded_mattes():
    pred, gt = blobby_pair(3)
    q = metrics.quantize_8bit(pred)
    assert np.allclose(q * 255, np.rint(q * 255)) and np.abs(q - pred).max() <= 0.5 / 255 + 1e-12
    assert (metrics.quantize_8bit(np.array([[-0.1, 1.2]])) == [[0.0, 1.0]]).all()
    # the same 8 bits as the PNGs that predict / --save-mattes write (halves included)
    x = np.concatenate([np.linspace(-0.1, 1.1, 5001), (np.arange(255) + 0.5) / 255])[None]
    assert (metrics.to_uint8(x) == matte_to_uint8(x)).all()
    eight = metrics.compute_metrics(pred, gt, precision="8bit")
    assert eight == pytest.approx(metrics.compute_metrics(q, metrics.quantize_8bit(gt)), rel=1e-6)
    assert eight["sad"] != metrics.compute_metrics(pred, gt)["sad"]
    with pytest.raises(ValueError, match="precision"):
        metrics.compute_metrics(pred, gt, precision="16bit")


def test_compute_and_average_metrics():
    row = metrics.compute_metrics(PRED, GT)
    assert set(row) == set(metrics.METRIC_NAMES)
    assert row["mad"] == pytest.approx(0.5)
    rows = [{"mse": 1.0, "mad": float("nan"), "sad": 1, "grad": 0, "conn": 0},
            {"mse": 3.0, "mad": 0.5, "sad": 3, "grad": 0, "conn": 2}]
    avg = metrics.average_metrics(rows)
    assert avg == {"mse": 2.0, "mad": 0.5, "sad": 2.0, "grad": 0.0, "conn": 1.0}


def test_unknown_band_and_shared_masks():
    pred, gt = blobby_pair(4)
    band = metrics.unknown_band(gt, radius=2)
    assert (band == metrics.unknown_mask(metrics.trimap_from_alpha(gt, radius=2))).all()
    # the same band from the 8-bit matte: alpha == 1 <=> 255, alpha > 0 <=> > 0
    gt8 = np.rint(gt * 255).astype(np.uint8)
    assert (metrics.unknown_band(gt8, 2) == metrics.unknown_band(gt8 / 255.0, 2)).all()
    rows = metrics.compute_metrics_masks(pred, gt, [None, band], precision="8bit")
    # (OpenCV's threaded filtering can differ in the last bits between calls)
    assert rows[0] == pytest.approx(metrics.compute_metrics(pred, gt, precision="8bit"), rel=1e-9)
    assert rows[1] == pytest.approx(metrics.compute_metrics(pred, gt, band, precision="8bit"),
                                    rel=1e-9)
    assert rows[1]["sad"] < rows[0]["sad"]
