"""Video matting with OpenCV I/O: a matte video and/or a composite video, same frames and rate.

Frames are decoded with ``cv2.VideoCapture``, batched through a ``Predictor`` (all frames of a
video share one input size, so one compiled shape), de-flickered with One-Frame Delay
(``ofd.OneFrameDelay``: the output lags one frame and the last frame is flushed at the end),
and written with ``cv2.VideoWriter`` (mp4 -> 'mp4v', avi -> 'MJPG').
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import cv2
import numpy as np

from modnet_jax.inference.images import Background, InputError, background_for, composite
from modnet_jax.inference.images import matte_to_uint8
from modnet_jax.inference.ofd import OFD_THRESHOLD, OneFrameDelay
from modnet_jax.inference.preprocess import postprocess, preprocess
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


def process_video(predictor, path: str, matte_path: Optional[str] = None,
                  composite_path: Optional[str] = None, background: Background = (0, 255, 0),
                  ofd: bool = True, ofd_threshold: float = OFD_THRESHOLD,
                  progress: bool = True) -> VideoResult:
    """Matte every frame of ``path``; write ``matte_path`` and/or ``composite_path``.

    The outputs keep the input's frame count and frame rate (DEFAULT_FPS if it reports none).
    Raises ``InputError`` for a video that cannot be opened, has no decodable frame, or whose
    outputs cannot be created; output files are only created once a first frame decoded.
    """
    cap, info = open_video(path)
    writers: Dict[str, cv2.VideoWriter] = {}
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise InputError(f"{path}: video has no frames (empty, or its codec cannot be "
                             f"decoded)")
        height, width = frame.shape[:2]
        fps = info.fps or DEFAULT_FPS
        targets = {"matte": matte_path, "composite": composite_path}
        for name, out in targets.items():
            if out:
                writers[name] = open_writer(out, fps, width, height)
        bg = background_for(background, height, width) if composite_path else None
        stream = OneFrameDelay(ofd_threshold, enabled=ofd)
        bar = Progress(info.frame_count or None, desc=os.path.basename(path), unit="frames",
                       enabled=progress)

        def emit(pairs) -> None:
            for matte, rgb in pairs:
                if "matte" in writers:
                    gray = matte_to_uint8(matte)
                    writers["matte"].write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
                if "composite" in writers:
                    comp = composite(rgb, matte, bg)
                    writers["composite"].write(cv2.cvtColor(comp, cv2.COLOR_RGB2BGR))
                bar.update()

        def run(batch: List[np.ndarray]) -> None:
            x = np.stack([preprocess(f, predictor.ref_size) for f in batch])
            for rgb, m in zip(batch, predictor.run_inputs(x)):
                emit(stream.push(postprocess(m, height, width, predictor.resize_back), rgb))

        batch: List[np.ndarray] = []
        while ok:
            batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(batch) == predictor.batch_size:
                run(batch)
                batch = []
            ok, frame = cap.read()
        if batch:
            run(batch)
        emit(stream.flush())
        bar.close()
        return VideoResult(frames=bar.count, fps=fps, seconds=bar.elapsed,
                           outputs={k: v for k, v in targets.items() if v})
    finally:
        cap.release()
        for writer in writers.values():
            writer.release()
