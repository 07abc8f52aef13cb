"""Live sources for ``predict --stream SOURCE``: a camera, a stream URL or a video file played
at its own frame rate as if it were live.

    capture thread --> LatestFrame (holds at most ``capacity`` frames) --> matting --> sinks

* The capture thread reads frames as the source delivers them (a file is paced to its frame
  rate) and stamps each with the time it arrived. It never waits for the model: when the
  slot is full the oldest untaken frame is replaced and counted as dropped, so memory stays
  bounded however far the model falls behind, and the model always works on the newest frame.
* The consumer (the calling thread) takes one frame at a time and pushes it through
  ``MattingEngine.live``: the video path of files, one frame per call (resize, model, resize
  back, One-Frame Delay and the composite on the device). OFD needs frame t+1 to correct
  frame t, so with it every output leaves one processed frame later: the latency readout
  includes that delay; ``--no-ofd`` removes it for the lowest latency.
* Latency is measured per output frame from capture to the moment its output is written;
  p50/p95 are printed live (last ``LIVE_WINDOW`` frames) and for the whole run at the end.
* Sinks: a video file (``VideoFileSink``; a dropped frame's time is filled by repeating the
  previous output, so the file plays in real time at the source's rate) and/or a preview window
  (``PreviewSink``, only where a display and an OpenCV GUI exist; 'q' or Esc ends the stream).
* Ctrl-C ends the stream cleanly: the held OFD frame is written and the file finalised.

``run_stream`` takes any object with ``push(rgb) -> [Matted]`` and ``finish() -> [Matted]``
(``MattingEngine.live(...)``'s), so the loop does not depend on how the model runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, List, Optional, Sequence

import cv2
import numpy as np

from modnet_jax.inference.images import InputError

LIVE_WINDOW = 100
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    index: int          # position in the source (dropped frames count too)
    image: np.ndarray   # RGB uint8 [H, W, 3]
    captured: float     # clock time the frame arrived


class LatestFrame:
    """A bounded hand-off between one producer and one consumer thread.

    ``put`` never blocks: with ``capacity`` frames already waiting the oldest is discarded
    (``dropped`` counts them). ``get`` blocks until a frame is there or ``close`` was called
    and nothing is left (then it returns None). ``max_len`` is the most frames ever held.
    """

    def __init__(self, capacity: int = 1):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: Deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.max_len = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self.max_len = max(self.max_len, len(self._items))
            self._cond.notify()

    def get(self, timeout: Optional[float] = None) -> Optional[Any]:
        with self._cond:
            end = None if timeout is None else time.monotonic() + timeout
            while not self._items and not self._closed:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed and not self._items


class Capture(threading.Thread):
    """Reads ``source.read() -> (ok, BGR frame)`` into ``slot`` until the source ends or
    ``stop()``; with ``pace_fps`` frame i is released no earlier than i / pace_fps seconds
    after the first (a file played as if live). Closes the slot when done."""

    def __init__(self, source, slot: LatestFrame, pace_fps: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, bgr: bool = True,
                 first: Optional[np.ndarray] = None):
        super().__init__(name="modnet-capture", daemon=True)
        self.source, self.slot, self.pace_fps = source, slot, pace_fps
        self.first = first  # a frame already read from ``source`` (e.g. for a warm-up)
        self.clock, self.sleep, self.bgr = clock, sleep, bgr
        self.frames = 0
        self.error: Optional[BaseException] = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            start = None
            while not self._stop_event.is_set():
                if self.first is not None:
                    ok, frame, self.first = True, self.first, None
                else:
                    ok, frame = self.source.read()
                if not ok or frame is None:
                    break
                now = self.clock()
                if start is None:
                    start = now
                if self.pace_fps:
                    wait = start + self.frames / self.pace_fps - now
                    if wait > 0:
                        self.sleep(wait)
                        now = self.clock()
                image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if self.bgr else frame
                self.slot.put(Frame(self.frames, image, now))
                self.frames += 1
        except BaseException as exc:  # reported by the consumer
            self.error = exc
        finally:
            self.slot.close()


class LatencyStats:
    """Per-frame latencies (seconds): p50/p95 over the run and over the last ``window``."""

    def __init__(self, window: int = LIVE_WINDOW):
        self.values: List[float] = []
        self.recent: Deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self.values.append(float(seconds))
        self.recent.append(float(seconds))

    @staticmethod
    def _pct(values, q: float) -> float:
        return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else 0.0

    def p50(self, recent: bool = False) -> float:
        return self._pct(self.recent if recent else self.values, 50)

    def p95(self, recent: bool = False) -> float:
        return self._pct(self.recent if recent else self.values, 95)


class VideoFileSink:
    """Writes RGB frames to a video file at ``fps`` (opened at the first frame, at its size);
    frames whose capture times leave gaps (dropped frames) are repeated so that the file
    keeps real time."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        self.writer = None
        self.written = 0
        self._start: Optional[float] = None

    def write(self, image: np.ndarray, captured: float) -> None:
        if self.writer is None:
            from modnet_jax.imaging.video import open_writer

            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.writer = open_writer(self.path, self.fps, image.shape[1], image.shape[0])
            self._start = captured
        due = int(round((captured - self._start) * self.fps)) + 1
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for _ in range(max(1, due - self.written)):
            self.writer.write(bgr)
            self.written += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def display_available() -> bool:
    """A display to show a window on, and an OpenCV build with a GUI (not the headless one)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("modnet_jax probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("modnet_jax probe")
        return True
    except cv2.error:
        return False


class PreviewSink:
    """A preview window; ``write`` returns False once the user pressed 'q' or Esc."""

    def __init__(self, title: str = "modnet_jax"):
        self.title = title

    def write(self, image: np.ndarray, captured: float) -> bool:
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


@dataclass
class StreamResult:
    frames_in: int      # frames the source delivered
    frames_out: int     # frames matted and written
    dropped: int        # frames replaced before the model took them
    seconds: float
    latency: LatencyStats = field(repr=False)
    max_queue: int = 0
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def summary(self, ofd: bool) -> str:
        lag = " (incl. the one-frame OFD delay)" if ofd else ""
        return (f"stream: {self.frames_in} frames in, {self.frames_out} out, {self.dropped} "
                f"dropped, {self.fps:.1f} frames/s; latency p50 {self.latency.p50() * 1e3:.0f}"
                f" ms, p95 {self.latency.p95() * 1e3:.0f} ms{lag}"
                + ("; stopped by Ctrl-C" if self.interrupted else ""))


def render(result) -> np.ndarray:
    """The output frame: the composite, or the matte as gray RGB when there is none."""
    if result.composite is not None:
        return result.composite
    return np.repeat(result.matte_uint8[:, :, None], 3, axis=2)


def run_stream(slot: LatestFrame, live, sinks: Sequence[Any], *,
               clock: Callable[[], float] = time.monotonic, progress=None,
               max_frames: Optional[int] = None, duration: Optional[float] = None
               ) -> StreamResult:
    """Matte frames from ``slot`` (filled by a ``Capture``) through ``live`` (``push`` /
    ``finish``, as ``MattingEngine.live``) until the slot closes, a sink says stop,
    ``max_frames`` outputs, ``duration`` seconds, or Ctrl-C. Sinks: ``write(rgb, captured)``
    (returning False stops) and ``close()``; they are closed here."""
    stats = LatencyStats()
    start = clock()
    out = 0
    waiting: Deque[Frame] = deque()  # frames pushed whose results have not come out
    going = True
    interrupted = False

    def emit(results, last: bool = False) -> None:
        nonlocal out, going
        # In order, one result per pushed frame; at the end, the last frames pushed.
        frames = ([waiting.pop() for _ in results][::-1] if last
                  else [waiting.popleft() for _ in results])
        for result, frame in zip(results, frames):
            image = render(result)
            for sink in sinks:
                if sink.write(image, frame.captured) is False:
                    going = False
            stats.add(clock() - frame.captured)
            out += 1
            if progress is not None:
                progress.postfix = (f"latency p50 {stats.p50(True) * 1e3:.0f} ms p95 "
                                    f"{stats.p95(True) * 1e3:.0f} ms, {slot.dropped} dropped")
                progress.update()

    try:
        while going:
            if max_frames is not None and out >= max_frames:
                break
            if duration is not None and clock() - start >= duration:
                break
            frame = slot.get(timeout=0.5)
            if frame is None:
                if slot.closed:
                    break
                continue
            waiting.append(frame)
            emit(live.push(frame.image))
        emit(live.finish(), last=True)
    except KeyboardInterrupt:
        interrupted = True
        emit(live.finish(), last=True)
    finally:
        slot.close()
        for sink in sinks:
            sink.close()
        if progress is not None:
            progress.close()
    return StreamResult(frames_in=slot.put_count, frames_out=out, dropped=slot.dropped,
                        seconds=clock() - start, latency=stats, max_queue=slot.max_len,
                        interrupted=interrupted)


def open_source(spec: str):
    """(cv2.VideoCapture, fps, pace) for a camera index, a URL or a video file.

    Files are paced at their frame rate (``pace`` True): played as if live. Raises InputError.
    """
    is_camera = spec.isdigit()
    is_url = "://" in spec
    if not (is_camera or is_url) and not os.path.isfile(spec):
        raise InputError(f"{spec}: no such file (a live source is a camera index such as 0, "
                         f"a stream URL, or a video file)")
    cap = cv2.VideoCapture(int(spec) if is_camera else spec)
    if not cap.isOpened():
        cap.release()
        what = "camera" if is_camera else "stream" if is_url else "video"
        raise InputError(f"{spec}: cannot open {what}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
    return cap, fps, not (is_camera or is_url)
