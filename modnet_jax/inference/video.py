"""Video matting with OpenCV I/O: a matte video and/or a composite video, same frames and rate.

Frames are decoded with ``cv2.VideoCapture`` on a reader thread, matted by
``MattingEngine.video`` (batches of frames, One-Frame Delay and the composite on the device),
and encoded with ``cv2.VideoWriter`` (mp4 -> 'mp4v', avi -> 'MJPG') on a writer thread; the
queues between them hold a few batches at most.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

import cv2

from modnet_jax.imaging.compositing import Background
from modnet_jax.imaging.files import VIDEO_EXTENSIONS as VIDEO_EXTS
from modnet_jax.imaging.files import InputError, is_video_path
from modnet_jax.imaging.video import DEFAULT_FPS, count_frames, open_video, open_writer
from modnet_jax.imaging.video import VideoOutput, read_frames
from modnet_jax.inference.foreground import clean_outputs
from modnet_jax.inference.pipeline import BackgroundWriter, prefetch
from modnet_jax.progress import Progress
from modnet_jax.temporal import FlickerMeter


# Video file helpers live in imaging.video / imaging.files; these names stay importable here.
__all__ = ["DEFAULT_FPS", "VIDEO_EXTS", "InputError", "VideoResult", "count_frames",
           "is_video_path", "open_video", "open_writer", "process_video"]


@dataclass
class VideoResult:
    frames: int
    fps: float
    seconds: float
    outputs: Dict[str, str]
    flicker: Optional[float] = None  # temporal.flicker_score of the written mattes, if asked

    @property
    def rate(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def process_video(engine, path: str, matte_path: Optional[str] = None,
                  composite_path: Optional[str] = None, background: Background = (0, 255, 0),
                  ofd: bool = True, clean: bool = False, progress: bool = True,
                  queue_depth: int = 2, flicker: bool = False) -> VideoResult:
    """Matte every frame of ``path`` with ``engine``; write ``matte_path`` and/or ``composite_path``.

    The outputs keep the input's frame count and frame rate (DEFAULT_FPS if it reports none).
    ``clean`` re-estimates the foreground colours before compositing (``foreground.py``; on
    the host, slow). Raises ``InputError`` for a video that cannot be opened, has no decodable
    frame, or whose outputs cannot be created; output files are only created once a first
    frame decoded. ``flicker`` also measures the mattes' flicker score (``temporal.FlickerMeter``:
    mean |a_t - a_(t-1)| where the input frame did not change) into ``VideoResult.flicker``.
    """
    cap, info = open_video(path)
    meter = FlickerMeter() if flicker else None
    writers: Dict[str, VideoOutput] = {}
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
            if meter is not None:
                meter.update(result.image, result.matte)
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
        depth = queue_depth * engine.video_batch_size
        with prefetch(all_frames(), depth) as source, BackgroundWriter(write, depth) as writer:
            for result in engine.video(source, ofd=ofd, background=on_device_bg,
                                       with_image=(clean and bool(composite_path))
                                       or meter is not None,
                                       matte=bool(matte_path) or clean or meter is not None):
                writer.put(result)
        bar.close()
        return VideoResult(frames=bar.count, fps=fps, seconds=bar.elapsed,
                           outputs={k: v for k, v in targets.items() if v},
                           flicker=None if meter is None else meter.value)
    except BaseException:
        for writer in writers.values():
            writer.discard()  # a failed video leaves no half-written output
        raise
    finally:
        cap.release()
        for writer in writers.values():
            writer.release()
