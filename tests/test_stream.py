"""Live sources (``modnet_jax.inference.stream``, ``predict --stream``): frames are dropped, not
queued, behind a slow consumer; latency figures on a fake clock; the file sink keeps real
time; the command end to end on a small clip with the untrained model at ref size 64 (the
engine's live path itself is tested against the host path in test_engine.py)."""

import time

import cv2
import numpy as np
import pytest

from modnet_jax import predict
from modnet_jax.checkpointing import save_variables
from modnet_jax.inference import Matted, composite, count_frames
from modnet_jax.inference.stream import (
    Capture,
    Frame,
    LatencyStats,
    LatestFrame,
    VideoFileSink,
    open_source,
    run_stream,
)
from modnet_jax.models import create_model
from modnet_jax.temporal import OneFrameDelay


class FakeClock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, dt):
        self.t += dt


class HostLive:
    """``MattingEngine.live``'s interface (push / finish) over a host matte function and the
    host One-Frame Delay, so the stream loop runs with fake mattes and a fake clock."""

    def __init__(self, matte_fn, ofd=True, background=None):
        self.matte_fn, self.background = matte_fn, background
        self.delay = OneFrameDelay(enabled=ofd)

    def _out(self, pairs):
        return [Matted(matte=m, composite=None if self.background is None
                       else composite(image, m, self.background)) for m, image in pairs]

    def push(self, image):
        return self._out(self.delay.push(self.matte_fn([image])[0], image))

    def finish(self):
        return self._out(self.delay.flush())


def write_clip(path, frames, h=48, w=64, fps=30.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h), True)
    for i in range(frames):
        writer.write(np.full((h, w, 3), (i * 7) % 256, np.uint8))
    writer.release()
    return str(path)


def test_latest_frame_keeps_only_the_newest_and_counts_drops():
    slot = LatestFrame(capacity=2)
    for i in range(10):
        slot.put(i)
    assert (slot.put_count, slot.dropped, slot.max_len) == (10, 8, 2)
    assert slot.get(timeout=0) == 8 and slot.get(timeout=0) == 9
    assert slot.get(timeout=0.01) is None and not slot.closed
    slot.put(10)
    slot.close()
    assert slot.get() == 10 and slot.get() is None and slot.closed
    with pytest.raises(ValueError):
        LatestFrame(0)


def test_file_source_faster_than_a_slow_consumer_drops_frames_and_stays_bounded(tmp_path):
    path = write_clip(tmp_path / "clip.avi", 30, fps=30.0)
    cap, fps, pace = open_source(path)
    assert pace and fps == pytest.approx(30.0)
    slot = LatestFrame(1)
    lengths = []
    real_put = slot.put

    def watched_put(item):  # the slot's length after every put, seen from the producer
        real_put(item)
        lengths.append(len(slot._items))

    slot.put = watched_put
    capture = Capture(cap, slot, pace_fps=fps)
    taken = []

    def slow_matte(frames):  # ~10 frames/s against a 30 frames/s source
        taken.append(frames[0].copy())
        time.sleep(0.1)
        return [np.full(frames[0].shape[:2], 0.5, np.float32)]

    capture.start()
    result = run_stream(slot, HostLive(slow_matte), [])
    capture.join(timeout=5)
    cap.release()
    assert capture.frames == 30 and result.frames_in == 30
    assert result.frames_out < result.frames_in
    assert result.dropped > 0
    assert result.frames_out + result.dropped == result.frames_in == len(taken) + result.dropped
    assert max(lengths) <= 1 and result.max_queue == 1
    # Newest-frame policy: what the model saw came from ever later source frames.
    levels = [int(f[0, 0, 0]) for f in taken]
    assert levels == sorted(levels) and len(set(levels)) == len(levels)
    assert len(result.latency.values) == result.frames_out


def test_pacing_releases_frames_at_the_file_rate():
    clock = FakeClock(100.0)
    sleeps = []

    class Source:
        n = 0

        def read(self):
            self.n += 1
            clock.advance(0.01)  # decoding takes 10 ms
            return (self.n <= 4), np.zeros((2, 2, 3), np.uint8)

    def sleep(dt):
        sleeps.append(dt)
        clock.advance(dt)

    slot = LatestFrame(10)
    capture = Capture(Source(), slot, pace_fps=20.0, clock=clock, sleep=sleep)
    capture.run()  # in this thread
    frames = [slot.get(timeout=0) for _ in range(4)]
    assert [f.captured for f in frames] == pytest.approx([100.01, 100.06, 100.11, 100.16])
    assert sleeps == pytest.approx([0.04, 0.04, 0.04])
    assert slot.closed


def test_latency_percentiles_by_hand():
    stats = LatencyStats(window=3)
    for v in (0.4, 0.1, 0.3, 0.2, 1.0):
        stats.add(v)
    # sorted 0.1 0.2 0.3 0.4 1.0: median 0.3; p95 at rank 3.8 -> 0.4 + 0.8 * 0.6 = 0.88
    assert stats.p50() == pytest.approx(0.3)
    assert stats.p95() == pytest.approx(0.88)
    # the live window holds 0.3 0.2 1.0: median 0.3, p95 at rank 1.9 -> 0.3 + 0.9 * 0.7
    assert stats.p50(recent=True) == pytest.approx(0.3)
    assert stats.p95(recent=True) == pytest.approx(0.93)
    assert LatencyStats().p50() == 0.0


@pytest.mark.parametrize("ofd, want", [
    # frame k captured at 0.1 k, each matte takes 0.25 s from t = 0: without OFD its output
    # leaves at 0.25 (k + 1); with OFD one matte later (the last one at the flush, 1.25).
    (False, [0.25, 0.40, 0.55, 0.70, 0.85]),
    (True, [0.50, 0.65, 0.80, 0.95, 0.85]),
])
def test_latency_on_a_fake_clock_and_the_explicit_ofd_delay(ofd, want):
    clock = FakeClock(0.0)
    slot = LatestFrame(capacity=5)
    for k in range(5):
        slot.put(Frame(k, np.zeros((4, 4, 3), np.uint8), 0.1 * k))
    slot.close()

    def matte_fn(frames):
        clock.advance(0.25)
        return [np.zeros((4, 4), np.float32)]

    written = []

    class Sink:
        def write(self, image, captured):
            written.append((captured, image.shape))

        def close(self):
            written.append("closed")

    result = run_stream(slot, HostLive(matte_fn, ofd, (255, 255, 255)), [Sink()], clock=clock)
    assert result.latency.values == pytest.approx(want)
    assert result.latency.p50() == pytest.approx(float(np.median(want)))
    assert (result.frames_in, result.frames_out, result.dropped) == (5, 5, 0)
    assert [c for c, _ in written[:-1]] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert written[-1] == "closed" and written[0][1] == (4, 4, 3)
    assert result.fps == pytest.approx(5 / 1.25)


def test_ctrl_c_flushes_the_held_frame_and_closes_the_sinks():
    slot = LatestFrame(capacity=3)
    for k in range(3):
        slot.put(Frame(k, np.zeros((2, 2, 3), np.uint8), 0.0))
    calls = []

    def matte_fn(frames):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [np.zeros((2, 2), np.float32)]

    closed = []

    class Sink:
        def write(self, image, captured):
            pass

        def close(self):
            closed.append(True)

    result = run_stream(slot, HostLive(matte_fn), [Sink()])
    assert result.interrupted and result.frames_out == 2 and closed == [True]
    assert "stopped by Ctrl-C" in result.summary(True)


def test_file_sink_repeats_frames_to_keep_real_time(tmp_path):
    sink = VideoFileSink(str(tmp_path / "out.avi"), fps=10.0)
    frame = np.zeros((32, 48, 3), np.uint8)
    for captured in (5.0, 5.1, 5.4, 5.5):  # 5.2 and 5.3 were dropped
        sink.write(frame, captured)
    sink.close()
    assert sink.written == 6
    assert count_frames(str(tmp_path / "out.avi")) == 6


def test_predict_stream_cli_writes_the_composite_and_reports(tmp_path, capsys):
    _, variables = create_model()
    ckpt = save_variables(str(tmp_path / "ckpt"), variables)
    clip = write_clip(tmp_path / "cam.avi", 12, h=64, w=80, fps=25.0)
    out = tmp_path / "out"
    rc = predict.cli(["--checkpoint", ckpt, "--stream", clip, "--output", str(out),
                      "--ref-size", "64", "--composite", "white", "--preview", "off",
                      "--video-format", "avi", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "stream: 12 frames in" in err and "latency p50" in err
    assert count_frames(str(out / "cam_composite.avi")) >= 1
    # user mistakes: one line each, exit status 2
    for argv, needle in [
        (["--stream", str(tmp_path / "none.mp4"), "--output", str(out)], "no such file"),
        (["--stream", clip, clip, "--output", str(out)], "give one or the other"),
        (["--stream", clip, "--preview", "off"], "give --output DIR"),
        ([clip], "--output DIR is required"),
    ]:
        assert predict.cli(["--checkpoint", ckpt] + argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and len(err.splitlines()) == 1, err


def test_capture_thread_is_stopped_by_stop():
    class Endless:
        def read(self):
            time.sleep(0.001)
            return True, np.zeros((2, 2, 3), np.uint8)

    slot = LatestFrame(1)
    capture = Capture(Endless(), slot)
    capture.start()
    time.sleep(0.05)
    capture.stop()
    capture.join(timeout=2)
    assert not capture.is_alive()
    assert capture.frames > 0 and slot.max_len == 1
    while slot.get(timeout=0) is not None:
        pass
    assert slot.closed
