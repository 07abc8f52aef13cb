"""One-Frame Delay: fixes single-frame flicker, leaves steady pixels and real motion alone."""

import numpy as np
import pytest

from modnet_jax.temporal import OneFrameDelay, one_frame_delay


def test_flicker_replaced_by_neighbour_mean():
    prev = np.array([[0.2, 0.0, 1.0, 0.0, 0.50]])
    cur = np.array([[0.9, 0.0, 0.0, 0.5, 0.55]])
    nxt = np.array([[0.24, 0.0, 1.0, 1.0, 0.50]])
    out = one_frame_delay(prev, cur, nxt, threshold=0.1)
    # 0: flicker (neighbours agree within 0.1, cur off by > 0.1) -> (0.2 + 0.24) / 2.
    # 1: steady. 2: a one-frame hole in the foreground -> 1. 3: real motion 0 -> 0.5 -> 1
    # (neighbours disagree) stays. 4: jitter below the threshold stays.
    assert out == pytest.approx(np.array([[0.22, 0.0, 1.0, 0.5, 0.55]]))


def _sequence():
    """8 frames 16x16: steady fg square + a bar moving one pixel a frame; frame 4 flickers."""
    frames = []
    for t in range(8):
        a = np.zeros((16, 16), np.float32)
        a[4:12, 4:12] = 1.0
        a[14, : 2 * t + 2] = 1.0  # growing bar: steady change, never a flicker
        frames.append(a)
    clean = [f.copy() for f in frames]
    frames[4][6:8, 6:8] = 0.0   # holes in the foreground for one frame
    frames[4][0, 0] = 0.8       # a speck in the background for one frame
    return frames, clean


def test_stream_fixes_flicker_and_keeps_steady_pixels():
    frames, clean = _sequence()
    ofd = OneFrameDelay(threshold=0.1)
    out = []
    for t, f in enumerate(frames):
        ready = ofd.push(f, t)
        if t == 0:
            assert ready == []  # the output lags one frame
        out += ready
    out += ofd.flush()
    assert [item for _, item in out] == list(range(8))
    for (matte, _), want in zip(out, clean):
        np.testing.assert_array_equal(matte, want)


def test_stream_disabled_passes_through_without_delay():
    frames, _ = _sequence()
    ofd = OneFrameDelay(enabled=False)
    for t, f in enumerate(frames):
        (matte, item), = ofd.push(f, t)
        assert item == t
        np.testing.assert_array_equal(matte, f)
    assert ofd.flush() == []


@pytest.mark.parametrize("n", [1, 2, 3])
def test_short_streams_pass_through(n):
    frames = [np.full((2, 2), 0.9 * (t % 2), np.float32) for t in range(n)]
    ofd = OneFrameDelay()
    out = [p for f in frames for p in ofd.push(f, None)] + ofd.flush()
    assert len(out) == n
    # With 3 frames the middle one (0.9 between two zeros) is a flicker.
    want = [frames[0], np.zeros((2, 2)), frames[2]] if n == 3 else frames
    for (matte, _), w in zip(out, want):
        np.testing.assert_allclose(matte, w)
    assert ofd.flush() == []  # reset
