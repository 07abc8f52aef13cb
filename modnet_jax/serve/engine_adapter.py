"""The one place the server touches the inference package: every call into ``MattingEngine``
and ``modnet_jax.inference`` goes through ``EngineAdapter``, so the engine's internals can
change without the server noticing.

What the server uses of the engine, and nothing else:

* ``inference.cli.engine_from_args`` builds the engine from predict's model options (a project
  checkpoint, a release PyTorch file or the official ONNX, read as predict reads them);
* ``MattingEngine(model, variables, **options)`` with the public attributes ``model``,
  ``variables``, ``devices``, ``ref_size``, ``batch_size``, ``video_batch_size``,
  ``resize_back``, ``max_long_side``, ``max_pixels``, ``max_image_pixels``, ``ofd_threshold``,
  ``canvases``: one more engine per other reference size the page offers (same weights);
* ``MattingEngine.check_size`` (the pixel cap, from the file header before decoding),
  ``MattingEngine.images`` (photos; the engine batches equal sizes) and
  ``MattingEngine.video`` (the one video path, One-Frame Delay included);
* ``inference.images.read_image`` / ``image_size`` (predict's decoding: EXIF orientation,
  truncated files) and ``InputError``;
* ``inference.cli.split_host_cpu`` (in ``__main__``, before JAX starts) and
  ``inference_devices``: photos shared among devices as predict shares them.

The engine is not thread-safe, so all its work runs under ``lock``. A video or live stream
holds the lock only while the engine works on a frame, not while it waits for the next one
(``video``), so photos are served in between.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from modnet_jax.inference import InputError, MattingEngine
from modnet_jax.inference.cli import engine_from_args, inference_devices
from modnet_jax.inference.images import image_size, read_image


class TooManyPixels(InputError):
    """An image above the engine's pixel cap (``--max-image-pixels``)."""


class EngineAdapter:
    """A ``MattingEngine`` (and siblings at other reference sizes) behind one lock."""

    def __init__(self, engine: MattingEngine, ref_sizes: Iterable[int] = (),
                 stream_batch: int = 1):
        self.engine = engine
        self.stream_batch = int(stream_batch)  # video / camera frames per model call
        self.lock = threading.Lock()
        self._engines: Dict[Tuple[int, bool], MattingEngine] = {(engine.ref_size, False): engine}
        if len(engine.devices) == 1 and engine.video_batch_size == self.stream_batch:
            self._engines[(engine.ref_size, True)] = engine
        self._engines_lock = threading.Lock()
        self.ref_sizes = sorted({engine.ref_size, *(int(r) for r in ref_sizes)})

    @classmethod
    def from_args(cls, args, ref_sizes: Iterable[int] = ()) -> "EngineAdapter":
        """Raises ``CheckpointError`` / ``UserError`` (one line) as predict does. Photos are
        shared among the local devices as predict shares them (the CPU split into host devices
        by ``split_host_cpu`` before JAX started, or every GPU) unless ``--exact-shapes``."""
        devices = None if args.exact_shapes else inference_devices()
        return cls(engine_from_args(args, devices=devices), ref_sizes,
                   stream_batch=args.video_batch_size)

    # ------------------------------------------------------------------ facts

    @property
    def ref_size(self) -> int:
        return self.engine.ref_size

    @property
    def batch_size(self) -> int:
        return self.engine.batch_size

    @property
    def max_image_pixels(self) -> int:
        return self.engine.max_image_pixels

    def device(self) -> str:
        devices = self.engine.devices
        d = devices[0]
        count = f" x{len(devices)}" if len(devices) > 1 else ""
        return f"{d.platform}{count} ({getattr(d, 'device_kind', d.platform)})"

    def _for(self, ref_size: Optional[int], stream: bool = False) -> MattingEngine:
        """The engine for ``ref_size``; ``stream``: the one for videos and cameras, on the
        first device only (a live frame wants the lowest latency, not a batch split among
        devices)."""
        ref = self.ref_size if ref_size is None else int(ref_size)
        if ref not in self.ref_sizes:
            raise ValueError(f"reference size {ref} is not served (one of {self.ref_sizes})")
        with self._engines_lock:
            if (ref, stream) not in self._engines:
                e = self.engine
                devices = e.devices[:1] if stream else e.devices
                self._engines[(ref, stream)] = MattingEngine(
                    e.model, e.variables, ref_size=ref, batch_size=e.batch_size,
                    video_batch_size=self.stream_batch if stream else e.video_batch_size,
                    resize_back=e.resize_back, max_long_side=e.max_long_side,
                    max_pixels=e.max_pixels, max_image_pixels=e.max_image_pixels,
                    ofd_threshold=e.ofd_threshold, devices=devices, canvases=e.canvases)
            return self._engines[(ref, stream)]

    # ------------------------------------------------------------------ reading

    def read(self, path: str) -> np.ndarray:
        """RGB uint8 [H, W, 3] of an image file, upright, decoded as predict decodes it.
        ``TooManyPixels`` from the header, before decoding, for an image above the cap;
        ``InputError`` for anything else wrong with the file."""
        size = image_size(path)
        if size is None:
            raise InputError(f"{path}: not an image this server reads, or its header is "
                             f"damaged")
        try:
            self.engine.check_size(*size)
        except InputError as exc:
            raise TooManyPixels(f"{path}: {exc}") from None
        return read_image(path)

    # ------------------------------------------------------------------ matting

    def photos(self, items: List[Tuple[Hashable, np.ndarray]], *, ref_size: Optional[int] = None
               ) -> Dict[Hashable, Any]:
        """{key: Matted (its ``matte``) or InputError} for (key, RGB image) pairs matted
        together: one engine call, which batches photos of equal size."""
        engine = self._for(ref_size)
        with self.lock:
            return dict(engine.images(items))

    def video(self, frames: Iterable[np.ndarray], *, ref_size: Optional[int] = None,
              ofd: bool = True, background: Any = None, matte: bool = True
              ) -> Iterator[Any]:
        """``MattingEngine.video`` over ``frames`` (one ``Matted`` per frame, in order), holding
        the lock only while the engine works: it is let go while the next frame is awaited
        and while the caller handles a result."""
        engine = self._for(ref_size, stream=True)
        lock = self.lock
        source = iter(frames)

        def feed():
            while True:
                lock.release()
                try:
                    frame = next(source, None)
                finally:
                    lock.acquire()
                if frame is None:
                    return
                yield frame

        results = engine.video(feed(), ofd=ofd, background=background, matte=matte)
        try:
            while True:
                with lock:
                    result = next(results, None)
                if result is None:
                    return
                yield result
        finally:
            with lock:
                results.close()
