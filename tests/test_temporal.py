"""Flicker score: hand-computed values, zero on a static clip, grows with injected flicker."""

import math

import numpy as np
import pytest

from modnet_jax.temporal import FlickerMeter, flicker_score


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
