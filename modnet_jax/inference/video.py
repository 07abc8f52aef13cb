"""Video matting with OpenCV I/O: a matte video and/or a composite video, same frames and rate.

Frames are decoded with ``cv2.VideoCapture`` on a reader thread, matted by
``MattingEngine.video`` (batches of frames, One-Frame Delay and the composite on the device),
and encoded with ``cv2.VideoWriter`` (mp4 -> 'mp4v', avi -> 'MJPG') on a writer thread; the
queues between them hold a few batches at most.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, Iterator, Optional

import cv2
import numpy as np

from modnet_jax.inference.foreground import clean_outputs
from modnet_jax.inference.images import Background, InputError
from modnet_jax.inference.pipeline import BackgroundWriter, prefetch
from modnet_jax.progress import Progress

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
FOURCC_BY_EXT = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
DEFAULT_FPS = 25.0


def is_video_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_EXTS


@dataclass
class VideoInfo:
    fps: float
    frame_count: int  # as reported by the container; may be 0 or approximate
    width: int
    height: int


@dataclass
class VideoResult:
    frames: int
    fps: float
    seconds: float
    outputs: Dict[str, str]

    @property
    def rate(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


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


def open_writer(path: str, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """A colour ``cv2.VideoWriter`` for ``path`` (codec from the extension). Raises InputError."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FOURCC_BY_EXT:
        raise InputError(f"{path}: cannot write video with extension {ext!r} "
                         f"(use one of {sorted(FOURCC_BY_EXT)})")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC_BY_EXT[ext]), fps,
                             (width, height), True)
    if not writer.isOpened():
        writer.release()
        raise InputError(f"{path}: cannot open video for writing (folder missing or not "
                         f"writable, or codec {FOURCC_BY_EXT[ext]} unavailable)")
    return writer


def read_frames(cap) -> Iterator[np.ndarray]:
    """RGB frames of an opened ``cv2.VideoCapture`` until it ends."""
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def process_video(engine, path: str, matte_path: Optional[str] = None,
                  composite_path: Optional[str] = None, background: Background = (0, 255, 0),
                  ofd: bool = True, clean: bool = False, progress: bool = True,
                  queue_depth: int = 2) -> VideoResult:
    """Matte every frame of ``path`` with ``engine``; write ``matte_path`` and/or ``composite_path``.

    The outputs keep the input's frame count and frame rate (DEFAULT_FPS if it reports none).
    ``clean`` re-estimates the foreground colours before compositing (``foreground.py``; on
    the host, slow). Raises ``InputError`` for a video that cannot be opened, has no decodable
    frame, or whose outputs cannot be created; output files are only created once a first
    frame decoded.
    """
    cap, info = open_video(path)
    writers: Dict[str, cv2.VideoWriter] = {}
    try:
        frames = read_frames(cap)
        first = next(frames, None)
        if first is None:
            raise InputError(f"{path}: video has no frames (empty, or its codec cannot be "
                             f"decoded)")
        height, width = first.shape[:2]
        fps = info.fps or DEFAULT_FPS
        targets = {"matte": matte_path, "composite": composite_path}
        for name, out in targets.items():
            if out:
                writers[name] = open_writer(out, fps, width, height)
        bar = Progress(info.frame_count or None, desc=os.path.basename(path), unit="frames",
                       enabled=progress)

        def write(result) -> None:
            if clean and composite_path:
                result = clean_outputs(result, background=background)
            if "matte" in writers:
                writers["matte"].write(cv2.cvtColor(result.matte_uint8, cv2.COLOR_GRAY2BGR))
            if "composite" in writers:
                writers["composite"].write(cv2.cvtColor(result.composite, cv2.COLOR_RGB2BGR))
            bar.update()

        def all_frames():
            yield first
            yield from frames

        on_device_bg = None if (clean or not composite_path) else background
        depth = queue_depth * engine.batch_size
        with prefetch(all_frames(), depth) as source, BackgroundWriter(write, depth) as writer:
            for result in engine.video(source, ofd=ofd, background=on_device_bg,
                                       with_image=clean and bool(composite_path)):
                writer.put(result)
        bar.close()
        return VideoResult(frames=bar.count, fps=fps, seconds=bar.elapsed,
                           outputs={k: v for k, v in targets.items() if v})
    finally:
        cap.release()
        for writer in writers.values():
            writer.release()
