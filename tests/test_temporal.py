"""Temporal metrics: flicker score (zero on a static clip, grows with injected flicker, lowered
by One-Frame Delay) and dtSSD / MESSDdt against hand-computed values."""

import math

import numpy as np
import pytest

from modnet_jax.temporal import OneFrameDelay
from modnet_jax.temporal import FlickerMeter, TemporalMeter, dtssd_pair, flicker_score
from modnet_jax.temporal import ground_truth_flow, messddt_pair, temporal_metrics


def test_hand_computed_two_frames():
    f0 = np.zeros((2, 2, 3), np.uint8)
    f1 = f0.copy()
    f1[0, 0] = 50                      # one pixel moved: excluded
    f1[0, 1] = 2                       # within the default tolerance of 2 levels: still
    a0 = np.array([[0.0, 0.2], [0.5, 1.0]])
    a1 = np.array([[1.0, 0.5], [0.5, 0.9]])
    # still pixels: (0,1) |0.3|, (1,0) 0, (1,1) |0.1| -> 0.4 / 3
    assert flicker_score([f0, f1], [a0, a1]) == pytest.approx(0.4 / 3, abs=1e-12)
    # tolerance 0: (0,1) is no longer still -> 0.1 / 2
    assert flicker_score([f0, f1], [a0, a1], still_tol=0) == pytest.approx(0.05, abs=1e-12)


def test_static_clip_scores_zero_and_flicker_grows():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    matte = rng.random((16, 20))
    frames = [frame] * 6
    assert flicker_score(frames, [matte] * 6) == 0.0
    scores = []
    for amp in (0.01, 0.05, 0.2):
        noisy = [np.clip(matte + amp * rng.standard_normal(matte.shape), 0, 1) for _ in frames]
        scores.append(flicker_score(frames, noisy))
    assert 0 < scores[0] < scores[1] < scores[2]


def test_pooled_over_pairs_and_uint8_mattes():
    f = np.zeros((1, 4, 1), np.uint8)
    moving = f.copy()
    moving[0, :2] = 255                # frame 2 changes half the pixels
    a = [np.zeros((1, 4), np.uint8), np.full((1, 4), 51, np.uint8), np.full((1, 4), 51, np.uint8)]
    # pair 1: 4 still pixels, |0.2| each; pair 2: 2 still pixels, 0 -> 0.8 / 6
    assert flicker_score([f, f, moving], a) == pytest.approx(0.8 / 6, abs=1e-12)
    meter = FlickerMeter()
    assert math.isnan(meter.value)
    meter.update(f, a[0])
    assert math.isnan(meter.value) and meter.pairs == 0


def test_shape_errors():
    with pytest.raises(ValueError, match="frame size"):
        FlickerMeter().update(np.zeros((2, 2, 3), np.uint8), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        flicker_score([np.zeros((2, 2, 3), np.uint8)], [])


# ------------------------------------------------------------------ with ground truth

def _blob(cx, h=48, w=64):
    yy, xx = np.mgrid[:h, :w]
    return np.clip(1.5 - np.hypot((yy - 24) / 10, (xx - cx) / 10), 0, 1)


def test_dtssd_by_hand():
    zero = np.zeros((2, 2))
    a1 = np.array([[0.1, 0.2], [0.0, 0.0]])
    # the truth does not change, the prediction does: 100 * sqrt((0.01 + 0.04) / 4)
    assert dtssd_pair(a1, zero, zero, zero) == pytest.approx(100 * np.sqrt(0.05 / 4))
    # both change by the same amount: 0
    assert dtssd_pair(a1, zero, a1, zero) == pytest.approx(0.0)
    # clip: mean over its two pairs (0 for the static second pair)
    clip = temporal_metrics([zero, a1, a1], [zero, zero, zero], messddt=False)
    assert clip["dtssd"] == pytest.approx(100 * np.sqrt(0.05 / 4) / 2)
    assert clip["frames"] == 3 and np.isnan(clip["messddt"])
    assert clip["mad"] == pytest.approx((0 + 0.075 + 0.075) / 3)


def test_messddt_by_hand_with_a_known_flow():
    # The subject moves one pixel right; the prediction's error moves with it.
    g0, g1 = np.array([[1.0, 0, 0, 0]]), np.array([[0, 1.0, 0, 0]])
    a0, a1 = np.array([[0.8, 0, 0, 0]]), np.array([[0, 0.8, 0, 0]])  # E = 0.04 at the subject
    right = np.zeros((1, 4, 2), np.float32)
    right[..., 0] = 1.0
    assert messddt_pair(a1, a0, g1, g0, flow=right) == 0.0
    # Ignoring the motion, the error appears at one pixel and vanishes at another:
    # 1e4 * (0.04 + 0.04) / 4 = 200.
    assert messddt_pair(a1, a0, g1, g0, flow=np.zeros_like(right)) == pytest.approx(200.0)
    # dtSSD does not follow motion: ((0.2)^2 + (0.2)^2) / 4 -> 100 * sqrt(0.02)
    assert dtssd_pair(a1, a0, g1, g0) == pytest.approx(100 * np.sqrt(0.02))


def test_ground_truth_flow_follows_a_moving_blob():
    g0, g1 = _blob(28), _blob(30)  # two pixels to the right
    flow = ground_truth_flow(g0, g1)
    edge = (g0 > 0.05) & (g0 < 0.95)
    assert np.median(flow[..., 0][edge]) == pytest.approx(2.0, abs=0.05)
    assert np.abs(flow[..., 1][edge]).max() < 0.1
    assert np.abs(ground_truth_flow(g0, g0)).max() == 0.0
    # An error that moves with the subject costs (almost) nothing; one left behind does.
    moving = messddt_pair(g1 + 0.1 * g1, g0 + 0.1 * g0, g1, g0)
    static = messddt_pair(g1 + 0.1 * g0, g0 + 0.1 * g0, g1, g0)
    assert moving < 0.05 * static and static > 1.0


def test_meter_streams_per_frame_rows():
    g = [_blob(28 + 2 * t) for t in range(4)]
    rng = np.random.default_rng(0)
    p = [np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1) for x in g]
    meter = TemporalMeter()
    rows = [meter.update(a, b) for a, b in zip(p, g)]
    assert set(rows[0]) == {"mse", "mad"} and set(rows[1]) == {"mse", "mad", "dtssd", "messddt"}
    summary = meter.summary()
    assert summary["dtssd"] == pytest.approx(np.mean([r["dtssd"] for r in rows[1:]]))
    assert summary == temporal_metrics(p, g)
    with pytest.raises(ValueError, match="differ"):
        meter.update(np.zeros((3, 3)), np.zeros((3, 4)))


def test_one_frame_delay_lowers_flicker_and_dtssd():
    # A static scene whose predicted matte flickers on single frames at random pixels.
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    truth = _blob(16, 32, 32)
    preds = []
    for _ in range(12):
        a = truth.copy()
        spikes = rng.random(a.shape) < 0.05
        a[spikes] = 1.0 - a[spikes]
        preds.append(a)
    stream = OneFrameDelay()
    smoothed = [m for a in preds for m, _ in stream.push(a)] + [m for m, _ in stream.flush()]
    assert len(smoothed) == len(preds)
    frames = [frame] * len(preds)
    raw, ofd = flicker_score(frames, preds), flicker_score(frames, smoothed)
    print(f"flicker raw {raw:.4f} -> OFD {ofd:.4f}")
    assert ofd < 0.5 * raw
    assert (temporal_metrics(smoothed, [truth] * 12, messddt=False)["dtssd"]
            < 0.5 * temporal_metrics(preds, [truth] * 12, messddt=False)["dtssd"])
