"""Live camera sessions: the browser's frames through the engine's video path (OFD included).

Each browser tab streaming its camera has a ``LiveSession``: a thread runs
``EngineAdapter.video`` over the frames the page sends, so One-Frame Delay works across them
exactly as for a video file (with it, a frame's result comes when the next frame has arrived).
The hand-off holds at most ``INBOX`` frames: when the model falls behind, the oldest waiting
frame is dropped (counted), so memory stays bounded and the newest frame is matted.
Latency is measured per result, from the moment its frame reached the server to the moment the
result was ready; the frame rate counts results over the last few seconds.
A session ends after ``IDLE_SECONDS`` without frames, or when its settings or frame size
change (a new one then starts).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Dict, Optional, Tuple

import numpy as np

from modnet_jax.serve.engine_adapter import EngineAdapter

INBOX = 2
IDLE_SECONDS = 20.0
MAX_SESSIONS = 8
WINDOW = 60  # results the fps / latency figures are taken over


class LiveSession:
    """One stream of frames through ``adapter.video``; ``push`` a frame, ``latest`` a result."""

    def __init__(self, adapter: EngineAdapter, settings: Tuple, shape: Tuple[int, ...]):
        self.settings, self.shape = settings, shape
        ref_size, ofd = settings
        self._adapter = adapter
        self._inbox: "queue.Queue[Tuple[np.ndarray, float]]" = queue.Queue(maxsize=INBOX)
        self._ready = threading.Condition()
        self._arrivals: deque = deque()
        self._result: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self.results = 0
        self.dropped = 0
        self.latencies: deque = deque(maxlen=WINDOW)
        self.done_at: deque = deque(maxlen=WINDOW)
        self.error: Optional[str] = None
        self.last_push = time.monotonic()
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(ref_size, ofd),
                                        name="live-session", daemon=True)
        self._thread.start()

    def push(self, frame: np.ndarray) -> None:
        self.last_push = time.monotonic()
        item = (frame, self.last_push)
        while True:
            try:
                self._inbox.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._inbox.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def latest(self, after: int, timeout: float) -> Tuple[int, Optional[Tuple]]:
        """(count, (frame, matte)) once more than ``after`` results exist (or ``timeout``)."""
        with self._ready:
            self._ready.wait_for(lambda: self.results > after or self._closed, timeout)
            return self.results, self._result

    def stats(self) -> str:
        if not self.latencies:
            return "waiting for the first matte"
        lat = np.asarray(self.latencies) * 1000
        span = self.done_at[-1] - self.done_at[0] if len(self.done_at) > 1 else 0.0
        fps = (len(self.done_at) - 1) / span if span > 0 else 0.0
        ofd = " (One-Frame Delay: one frame later)" if self.settings[1] else ""
        return (f"{fps:.1f} fps, latency p50 {np.percentile(lat, 50):.0f} ms / p95 "
                f"{np.percentile(lat, 95):.0f} ms{ofd}; {self.results} mattes, "
                f"{self.dropped} frames dropped")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def close(self) -> None:
        self._closed = True
        try:
            self._inbox.put_nowait(None)
        except queue.Full:
            pass

    def _frames(self):
        while not self._closed:
            try:
                item = self._inbox.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                return
            if item is None:
                return
            frame, arrived = item
            self._arrivals.append((frame, arrived))
            yield frame

    def _run(self, ref_size, ofd) -> None:
        try:
            for result in self._adapter.video(self._frames(), ref_size=ref_size, ofd=ofd,
                                              background=None, matte=True):
                frame, arrived = self._arrivals.popleft()
                now = time.monotonic()
                with self._ready:
                    self._result = (frame, result.matte_uint8)
                    self.results += 1
                    self.latencies.append(now - arrived)
                    self.done_at.append(now)
                    self._ready.notify_all()
        except Exception as exc:  # noqa: BLE001 -- shown on the page, the server goes on
            self.error = str(exc)
        finally:
            with self._ready:
                self._closed = True
                self._ready.notify_all()


class LiveSessions:
    """The sessions of all browser tabs, by Gradio's session id (at most ``MAX_SESSIONS``;
    idle ones are ended)."""

    def __init__(self, adapter: EngineAdapter):
        self.adapter = adapter
        self._sessions: Dict[str, LiveSession] = {}
        self._lock = threading.Lock()

    def session(self, key: str, settings: Tuple, shape: Tuple[int, ...]) -> LiveSession:
        with self._lock:
            now = time.monotonic()
            for k, s in list(self._sessions.items()):
                if not s.alive or now - s.last_push > IDLE_SECONDS:
                    s.close()
                    del self._sessions[k]
            current = self._sessions.get(key)
            if current is not None and (current.settings != settings or current.shape != shape):
                current.close()
                current = None
            if current is None:
                if len(self._sessions) >= MAX_SESSIONS:
                    raise RuntimeError(f"{MAX_SESSIONS} cameras are streaming already; "
                                       f"try again later")
                current = self._sessions[key] = LiveSession(self.adapter, settings, shape)
            return current

    def end(self, key: str) -> None:
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.close()

    def close(self) -> None:
        for key in list(self._sessions):
            self.end(key)
