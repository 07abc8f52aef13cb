"""Video files, and the threads around the engine: a reader that decodes ahead and a writer
that encodes behind.

``process_video`` writes a matte video and/or a composite video (same frames and rate):
frames are decoded with ``cv2.VideoCapture`` on a reader thread (``prefetch``), matted by
``MattingEngine.video`` (batches of frames, One-Frame Delay and the composite on the device),
and encoded with ``cv2.VideoWriter`` (mp4 -> 'mp4v', avi -> 'MJPG') on a writer thread
(``BackgroundWriter``). Both queues are bounded, so memory stays bounded whatever the speeds;
an exception in either thread is raised in the caller's thread.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

import cv2

from modnet_jax.imaging.compositing import Background
from modnet_jax.imaging.files import InputError
from modnet_jax.imaging.video import count_frames  # noqa: F401  (part of this module's API)
from modnet_jax.imaging.video import DEFAULT_FPS, VideoOutput, open_video, open_writer
from modnet_jax.imaging.video import read_frames
from modnet_jax.inference.images import clean_outputs
from modnet_jax.progress import Progress
from modnet_jax.temporal import FlickerMeter


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
    ``clean`` re-estimates the foreground colours before compositing (``images.clean_outputs``; on
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


# ---------------------------------------------------------------- threads


@contextmanager
def prefetch(iterable: Iterable[Any], depth: int = 4) -> Iterator[Iterator[Any]]:
    """``with prefetch(items, depth) as ahead:`` iterate ``items`` on a reader thread, at most
    ``depth`` items ahead; its exception is raised in the consumer. Leaving the block stops
    the reader (after the item it is reading)."""
    it, end = iter(iterable), object()
    pool = ThreadPoolExecutor(1, thread_name_prefix="modnet-reader")
    ahead = deque(pool.submit(next, it, end) for _ in range(max(1, int(depth))))

    def items() -> Iterator[Any]:
        while True:
            item = ahead.popleft().result()
            if item is end:
                return
            ahead.append(pool.submit(next, it, end))
            yield item

    try:
        yield items()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class BackgroundWriter:
    """Call ``fn(item)`` for every ``put(item)`` on a writer thread, in order, at most ``depth``
    items behind. The writer's exception is raised in the caller's thread (at a later ``put``
    or at ``close``) and the items after it are not written."""

    def __init__(self, fn: Callable[[Any], None], depth: int = 4):
        self._fn, self._depth = fn, max(1, int(depth))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="modnet-writer")
        self._pending: deque = deque()
        self._failed = False

    def _write(self, item: Any) -> None:
        if not self._failed:
            try:
                self._fn(item)
            except BaseException:
                self._failed = True
                raise

    def put(self, item: Any) -> None:
        while self._pending and (len(self._pending) >= self._depth or self._pending[0].done()):
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, item))

    def close(self) -> None:
        """Wait until every item is written; raise the writer's exception if it had one."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: finish quietly, keep the first exception
            try:
                self.close()
            except BaseException:  # noqa: BLE001
                pass
