"""Video files: frame counts and random access to single frames (OpenCV's VideoCapture).

Frames come out as uint8 RGB [H, W, 3] like every image reader here.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from modnet_jax.imaging.files import UnusableFile


def count_video_frames(path: str) -> int:
    """Frame count reported by the container (0 if OpenCV cannot open the video)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()



class VideoFrameReader:
    """Reads single frames by index, keeping a few captures open per process.

    Opening a video costs far more than seeking in it, so captures are cached; they are
    not picklable, so the cache is dropped when the reader is sent to a worker process.
    A capture has one read position, so reads are serialised (Grain prefetches on threads).
    """

    def __init__(self, max_open: int = 4):
        self.max_open = max_open
        self._open: dict[str, cv2.VideoCapture] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"max_open": self.max_open}

    def __setstate__(self, state):
        self.__init__(state["max_open"])

    def read(self, path: str, index: int) -> np.ndarray:
        with self._lock:
            frame = self._read_locked(path, index)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _read_locked(self, path: str, index: int) -> np.ndarray:
        capture = self._open.get(path)
        if capture is None:
            if len(self._open) >= self.max_open:
                oldest = next(iter(self._open))
                self._open.pop(oldest).release()
            capture = cv2.VideoCapture(str(path))
            self._open[path] = capture
        if not capture.isOpened():
            raise UnusableFile(path, "OpenCV cannot open the video")
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if not ok or frame is None:
            raise UnusableFile(f"{path}#{index}", "frame cannot be read (past the end or corrupt)")
        return frame
