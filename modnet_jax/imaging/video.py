"""Video files with OpenCV: opening with container facts, sequential and random-access frame
reads, frame counts, and writers (codec from the extension).

Frames come out as uint8 RGB [H, W, 3] like every image reader here. Errors are
`InputError` / `UnusableFile` with the file's path.
"""

from __future__ import annotations

import errno
import math
import os
import threading
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from modnet_jax.imaging import output
from modnet_jax.imaging.files import InputError, UnusableFile

FOURCC_BY_EXT = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 25.0


@dataclass
class VideoInfo:
    fps: float
    frame_count: int  # as reported by the container; may be 0 or approximate
    width: int
    height: int


def open_video(path: str):
    """(cv2.VideoCapture, VideoInfo). Raises ``InputError`` naming the file."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: cannot open video (unknown container or codec, or not a video)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    info = VideoInfo(fps=fps if math.isfinite(fps) and fps > 0 else 0.0,
                     frame_count=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                     height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
    return cap, info


def count_frames(path: str) -> int:
    """Frames that actually decode (reads the whole video)."""
    cap, _ = open_video(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


class VideoOutput:
    """A ``cv2.VideoWriter`` that writes a temporary name beside ``path`` (see `output`):
    ``release()`` closes it and renames it to ``path``; ``discard()`` (after a failure)
    closes and removes it, so a half-written video never appears under the real name."""

    def __init__(self, path: str, fourcc: str, fps: float, size: tuple):
        self.path = path
        self._temporary = output.temporary_name(path)
        self._writer = cv2.VideoWriter(self._temporary, cv2.VideoWriter_fourcc(*fourcc), fps,
                                       size, True)
        self._frames = 0
        if not self._writer.isOpened():
            self.discard()
            raise self._os_error() or InputError(
                f"{path}: cannot open video for writing (folder missing or not writable, or "
                f"codec {fourcc} unavailable)")

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoWriter's name
        return self._writer is not None

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)
        self._frames += 1

    def release(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.release()
            self._check_whole()
            output.commit(self._temporary, self.path)  # InputError if that fails

    def _check_whole(self) -> None:
        """OpenCV's writer reports no failed write (a full disk), so the finished file is read
        back: a container that does not open or holds fewer frames than were written is
        removed and reported, naming ``path``."""
        if self._frames == 0 or count_video_frames(self._temporary) >= self._frames:
            return
        error = self._os_error()  # while the cut file still fills the disk
        output.discard(self._temporary)
        raise error or output.WriteError(f"{self.path}: cannot write (the video came out "
                                         f"incomplete: fewer than the {self._frames} frames "
                                         f"written)")

    def _os_error(self):
        """The OS error OpenCV did not report, as a WriteError naming ``path``: the folder's
        disk is full, or the folder is not writable; None when neither."""
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            stats = os.statvfs(folder)
        except OSError:
            return None
        if stats.f_flag & os.ST_RDONLY:
            code = errno.EROFS
        elif stats.f_bavail == 0:
            code = errno.ENOSPC
        elif not os.access(folder, os.W_OK):
            code = errno.EACCES
        else:
            return None
        return output.write_error(self.path, OSError(code, os.strerror(code)))

    def discard(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.release()
        output.discard(self._temporary)


def open_writer(path: str, fps: float, width: int, height: int) -> VideoOutput:
    """A colour video writer for ``path`` (codec from the extension; written whole or not at
    all, see `VideoOutput`). Raises InputError."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FOURCC_BY_EXT:
        raise InputError(f"{path}: cannot write video with extension {ext!r} "
                         f"(use one of {sorted(FOURCC_BY_EXT)})")
    return VideoOutput(path, FOURCC_BY_EXT[ext], fps, (width, height))


def read_frames(cap) -> Iterator[np.ndarray]:
    """RGB frames of an opened ``cv2.VideoCapture`` until it ends."""
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def iter_video(path: str, grey: bool = False) -> Iterator[np.ndarray]:
    """The frames of a video file in order, closing it at the end: uint8 RGB [H, W, 3], or
    with `grey` the first channel [H, W] (matte videos, whose channels are equal).
    InputError if it cannot be opened."""
    cap, _ = open_video(path)
    try:
        if not grey:
            yield from read_frames(cap)
            return
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield np.ascontiguousarray(frame[:, :, 0])
    finally:
        cap.release()



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
