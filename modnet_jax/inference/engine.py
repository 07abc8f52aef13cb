"""``MattingEngine``: frames in (uint8 RGB of any size), mattes / cut-outs / composites out.

    engine = MattingEngine.from_checkpoint("runs/ppm/checkpoints")
    mattes = engine.matte(frames)                        # [B, H, W, 3] uint8 -> [B, H, W]
    for key, result in engine.images(((p, read_image(p)) for p in paths), background=(0, 255, 0)):
        ...                                              # result: Matted or InputError
    for result in engine.video(frames, ofd=True, background=(255, 255, 255)):
        ...                                              # one Matted per frame, in order
    live = engine.live(ofd=True, background=(0, 255, 0))
    results = live.push(frame) + ... + live.flush()      # a live source, frame by frame

Everything between decode and encode runs on the device (``programs.py``), equal to the
release's processing on the host (``tests/numpy_reference.py``, ``temporal.OneFrameDelay``) to
float32 rounding. Photos (one path):
each photo goes onto a canvas (``sizes.py``; with ``canvases=False``, its own model
size) and the model runs on a batch of canvases told their valid sizes (``models.canvas``),
so one compiled model serves many sizes with each photo's own mattes; with several
``devices`` each mattes one photo of a batch. Video (one path, files and live sources): a
batch is resized and matted (split by frame over the devices), then One-Frame Delay and the
outputs run on the first device, which carries the OFD state from batch to batch.

Memory is bounded: the model input follows the release's rule within ``max_long_side`` and
``max_pixels``; images above ``max_image_pixels`` are refused (``InputError``); at most
``max_pending`` photos wait for a batch, and one batch is in flight while the caller handles
the previous one's results.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from modnet_jax.inference import programs
from modnet_jax.inference.checkpoint import load_checked_variables
from modnet_jax.inference.images import Background, InputError, background_for, matte_to_uint8
from modnet_jax.inference.images import to_rgb_uint8
from modnet_jax.inference.options import (MAX_IMAGE_PIXELS, MAX_LONG_SIDE, MAX_PIXELS,
                                          OFD_THRESHOLD, REF_SIZE)
from modnet_jax.inference.sizes import REFIT, CanvasPolicy, model_input_size
from modnet_jax.models import model_from_config


@dataclass
class Matted:
    """One frame's results: ``matte`` [H, W] float32 in [0, 1] (None from ``video(...,
    matte=False)``); RGBA ``cutout``, RGB ``composite`` and the frame itself (``image``)
    [H, W, C] uint8 when asked for."""

    matte: Optional[np.ndarray] = None
    cutout: Optional[np.ndarray] = None
    composite: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None

    @property
    def matte_uint8(self) -> np.ndarray:
        return matte_to_uint8(self.matte)


_COMPILES = {"compiles": 0, "hits": 0, "seconds": 0.0}  # this process's, from jax.monitoring


def _on_duration(event: str, duration: float, **_) -> None:
    if event == "/jax/core/compile/backend_compile_duration":  # cache hits included
        _COMPILES["compiles"] += 1
        _COMPILES["seconds"] += duration


def _on_event(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _COMPILES["hits"] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)
jax.monitoring.register_event_listener(_on_event)


class MattingEngine:
    """A MODNet and its variables, run end to end on the device (see the module docstring).

    ``ref_size``: the release's reference short side; ``batch_size``: photos per model call on
    one device; ``video_batch_size``: video frames per model call (default ``batch_size``,
    rounded up to a multiple of the device count); ``resize_back``: "area" (the release) or
    "bilinear" (OpenCV's linear); the caps bound memory; ``ofd_threshold``: One-Frame Delay's
    flicker threshold; ``devices``: where programs run (default: JAX's first device; several:
    photos and video batches are split over them); ``canvases``: photos of different sizes
    share compiled model programs (the mattes do not change); ``canvas_refit``: photos' worth
    of padding after which a size gets a canvas of its own.
    """

    def __init__(self, model, variables: Dict[str, Any], *, ref_size: int = REF_SIZE,
                 batch_size: int = 4, video_batch_size: Optional[int] = None,
                 resize_back: str = "area",
                 max_long_side: int = MAX_LONG_SIDE, max_pixels: int = MAX_PIXELS,
                 max_image_pixels: int = MAX_IMAGE_PIXELS,
                 ofd_threshold: float = OFD_THRESHOLD, max_pending: Optional[int] = None,
                 devices: Optional[Sequence[Any]] = None, canvases: bool = True,
                 canvas_refit: float = REFIT):
        if batch_size < 1 or (video_batch_size is not None and video_batch_size < 1):
            raise ValueError(f"batch sizes must be >= 1, got {batch_size}, {video_batch_size}")
        if resize_back not in ("area", "bilinear"):
            raise ValueError(f"resize_back must be 'area' or 'bilinear', got {resize_back!r}")
        self.model = model
        self.devices = list(devices) if devices else [jax.devices()[0]]
        n_dev = len(self.devices)
        self.variables = {"params": variables["params"],
                          "batch_stats": variables.get("batch_stats", {})}
        self._mesh = Mesh(np.array(self.devices), ("frames",)) if n_dev > 1 else None
        self._placed: Dict[Hashable, Any] = {}  # device copies: variables, taps, backgrounds
        self.ref_size = int(ref_size)
        self.batch_size = int(batch_size)
        self.video_batch_size = -(-int(video_batch_size or batch_size) // n_dev) * n_dev
        self.resize_back = resize_back
        self.max_long_side = int(max_long_side)
        self.max_pixels = int(max_pixels)
        self.max_image_pixels = int(max_image_pixels)
        self.ofd_threshold = float(ofd_threshold)
        self.max_pending = max(int(max_pending or 2 * self.batch_size), self.batch_size)
        self.canvas_policy = CanvasPolicy(canvases, canvas_refit, max_pixels=self.max_pixels,
                                          max_long_side=self.max_long_side)
        self._counted = dict(_COMPILES)

    @classmethod
    def from_checkpoint(cls, checkpoint: str, model_cfg: Optional[dict] = None,
                        step: Optional[int] = None, **kwargs) -> "MattingEngine":
        """Raises ``CheckpointError`` (one line) for a missing, damaged or mismatched checkpoint
        (a modnet_jax checkpoint, or the release's ONNX / PyTorch weights file)."""
        model = model_from_config(model_cfg)
        return cls(model, load_checked_variables(model, checkpoint, step), **kwargs)

    # ------------------------------------------------------------------ sizes

    @property
    def canvases(self) -> bool:
        """Whether photos of different sizes share canvases (the ``canvases`` option)."""
        return self.canvas_policy.enabled

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(rh, rw) the model runs at: the release's rule within the caps."""
        return model_input_size(height, width, self.ref_size, self.max_long_side,
                                self.max_pixels)

    def canvas_for(self, rh: int, rw: int, count: int = 1) -> Tuple[int, int]:
        """The canvas (height, width) that ``count`` photos of model input size rh x rw run on
        next (``sizes.CanvasPolicy``); (rh, rw) with canvases off."""
        return self.canvas_policy.choose(rh, rw, count)

    def check_size(self, height: int, width: int) -> None:
        """Raise ``InputError`` if an image this size is above ``max_image_pixels``."""
        if height * width > self.max_image_pixels:
            raise InputError(f"{width}x{height} image ({height * width / 1e6:.0f} MP) is above "
                             f"the limit of {self.max_image_pixels / 1e6:g} MP "
                             f"(--max-image-pixels)")

    def _frame(self, image: np.ndarray, key: Hashable = None) -> np.ndarray:
        try:
            image = to_rgb_uint8(image)
            self.check_size(*image.shape[:2])
        except (ValueError, InputError) as exc:
            raise InputError(f"{key}: {exc}" if key is not None else str(exc)) from None
        return image

    # ------------------------------------------------------------------ device copies

    def _put(self, key: Hashable, make, shared: bool):
        """A device copy of ``make()`` kept under ``key``: on the first device, or (``shared``)
        replicated over every device of the mesh."""
        key = (key, shared and self._mesh is not None)
        if key not in self._placed:
            where = (NamedSharding(self._mesh, PartitionSpec()) if key[1] else self.devices[0])
            if key[0][0] == "background":  # only the last few backgrounds
                for old in [k for k in self._placed if k[0][0] == "background"][:-3]:
                    del self._placed[old]
            self._placed[key] = jax.device_put(make(), where)
        return self._placed[key]

    def _variables(self, shared: bool):
        return self._put(("variables",), lambda: self.variables, shared)

    def _taps(self, h: int, w: int, shared: bool = False):
        """(rows in, cols in, rows back, cols back) taps of an h x w image on the device."""
        rh, rw = self.input_size(h, w)
        pairs = ((h, rh, "area"), (w, rw, "area"), (rh, h, self.resize_back),
                 (rw, w, self.resize_back))
        return tuple(self._put(("taps",) + p, lambda p=p: programs.make_taps(*p), shared)
                     for p in pairs)

    def _background(self, background: Optional[Background], h: int, w: int):
        """Device float32 [3] for a colour, [H, W, 3] for an image, on the first device."""
        if background is None:
            return None
        if isinstance(background, np.ndarray):
            return self._put(("background", id(background), h, w),
                             lambda: background_for(background, h, w), False)
        return self._put(("background", tuple(background)),
                         lambda: np.asarray(background, np.float32), False)

    # ------------------------------------------------------------------ photos

    def matte(self, frames: Union[np.ndarray, Iterable[np.ndarray]]
              ) -> Union[np.ndarray, List[np.ndarray]]:
        """Mattes of RGB frames: [B, H, W] for an array [B, H, W, 3], else a list of [H, W]."""
        items = list(frames)
        out: Dict[int, np.ndarray] = {}
        for i, result in self.images(enumerate(items)):
            if isinstance(result, Exception):
                raise result
            out[i] = result.matte
        mattes = [out[i] for i in range(len(items))]
        return np.stack(mattes) if isinstance(frames, np.ndarray) else mattes

    def images(self, items: Iterable[Tuple[Hashable, Union[np.ndarray, Exception]]], *,
               cutout: bool = False, background: Optional[Background] = None,
               with_image: bool = False
               ) -> Iterator[Tuple[Hashable, Union[Matted, InputError]]]:
        """Yield (key, ``Matted``) for (key, RGB image) pairs as batches finish (not in order).

        One device: photos of one image size and canvas run ``batch_size`` at a time (when
        ``max_pending`` wait, and at the end, the rest run one by one). Several: one photo of a
        canvas per device (a short batch is filled with copies). A per-item problem (too
        large, or an ``Exception`` given instead of an image by a reader) is yielded as (key,
        InputError), so a folder always runs to its end.
        """
        options = (cutout, with_image)
        split = self._mesh is not None
        group = len(self.devices) if split else self.batch_size
        buckets: "OrderedDict[tuple, list]" = OrderedDict()
        held = 0
        in_flight: List[list] = []

        def dispatch(where: tuple, bucket: list):
            canvas = where[0]
            if split:
                in_flight.append(self._run(bucket, canvas, background, options))
            else:
                for part in ([bucket] if len(bucket) == group else [[i] for i in bucket]):
                    in_flight.append(self._run(part, canvas, background, options))
            while len(in_flight) > 1:
                for entry in in_flight.pop(0):
                    yield from self._fetch(entry)

        for key, image in items:
            if isinstance(image, Exception):
                yield key, image
                continue
            try:
                image = self._frame(image, key)
            except InputError as exc:
                yield key, exc
                continue
            size = self.input_size(*image.shape[:2])
            canvas = self.canvas_for(*size)
            where = (canvas,) if split else (canvas, image.shape[:2])
            bucket = buckets.setdefault(where, [])
            bucket.append((key, image, size))
            held += 1
            if len(bucket) >= group:
                held -= len(bucket)
                yield from dispatch(where, buckets.pop(where))
            elif held >= self.max_pending:
                oldest = next(iter(buckets))
                held -= len(buckets[oldest])
                yield from dispatch(oldest, buckets.pop(oldest))
        for where in list(buckets):
            yield from dispatch(where, buckets.pop(where))
        for batch in in_flight:
            for entry in batch:
                yield from self._fetch(entry)

    def _run(self, bucket: list, canvas: Tuple[int, int], background: Optional[Background],
             options: Tuple[bool, bool]) -> list:
        """Photos (key, image, model size) on one canvas: onto the canvas (a program per image
        size), one model call for all of them, off the canvas with their outputs (per image
        size). One device: the photos share an image size and run as one group. Several: one
        photo per device (missing ones are copies of the last, their results dropped).
        Returns (keys, device results) per group."""
        dev0, split = self.devices[0], self._mesh is not None
        if split:
            groups = [([key], image[None], size) for key, image, size in bucket]
        else:
            images = np.stack([image for _, image, _ in bucket])
            groups = [([key for key, _, _ in bucket], images, bucket[0][2])]
        placed, xs = [], []
        for _, host, _ in groups:
            images, taps = jax.device_put(host, dev0), self._taps(*host.shape[1:3])
            xs.append(programs.to_canvas(images, taps[0], taps[1], canvas=canvas))
            placed.append((images, taps))
        sizes = np.array([size for _, host, size in groups for _ in range(len(host))], np.int32)
        if split:
            pad = len(self.devices) - len(groups)
            sizes = np.concatenate([sizes, np.repeat(sizes[-1:], pad, axis=0)])
            at = NamedSharding(self._mesh, PartitionSpec("frames"))
            shards = [jax.device_put(x, d) for x, d in zip(xs + xs[-1:] * pad, self.devices)]
            x = jax.make_array_from_single_device_arrays((len(sizes),) + canvas + (3,), at,
                                                         shards)
        else:
            at, x = dev0, xs[0]
        mattes = programs.model_mattes(self._variables(split), x, jax.device_put(sizes, at),
                                       model=self.model, masked=self.canvases,
                                       mesh=self._mesh)
        parts = [mattes]
        if split:  # each photo's matte back to the first device, in batch order
            shards = sorted(mattes.addressable_shards, key=lambda sh: sh.index[0].start or 0)
            parts = [jax.device_put(sh.data, dev0) for sh in shards]
        out = []
        for (keys, host, size), (images, taps), part in zip(groups, placed, parts):
            res = programs.photo_out(images, part, taps[2], taps[3],
                                     self._background(background, *host.shape[1:3]),
                                     size=size, cutout=options[0], with_image=options[1])
            _copy_to_host_async(res)
            out.append((keys, res))
        return out

    @staticmethod
    def _fetch(batch) -> Iterator[Tuple[Hashable, Matted]]:
        keys, res = batch
        host = jax.device_get(res)
        for i, key in enumerate(keys):
            yield key, Matted(**{k: v[i] for k, v in host.items()})

    # ------------------------------------------------------------------ video

    def video(self, frames: Iterable[np.ndarray], *, ofd: bool = True, cutout: bool = False,
              background: Optional[Background] = None, with_image: bool = False,
              matte: bool = True) -> Iterator[Matted]:
        """One ``Matted`` per frame, in order, for a stream of equal-size RGB frames.

        Frames run ``video_batch_size`` at a time, one batch on the device while the previous
        one's results are handed out. With ``ofd`` each result equals ``temporal.
        OneFrameDelay`` over the per-frame mattes, batch seams included. ``matte=False``: results
        without the float matte (less to copy to the host). Raises ``InputError`` if the
        frame size changes mid-stream.
        """
        run = VideoRun(self, ofd=ofd, cutout=cutout, background=background,
                       with_image=with_image, matte=matte)
        pending = None
        batch: List[np.ndarray] = []
        for frame in frames:
            batch.append(run.check(frame))
            if len(batch) == run.batch_size:
                dispatched, batch = run.dispatch(batch), []
                if pending is not None:
                    yield from run.fetch(pending)
                pending = dispatched
        if batch:
            dispatched = run.dispatch(batch)
            if pending is not None:
                yield from run.fetch(pending)
            pending = dispatched
        if pending is not None:
            yield from run.fetch(pending)
        yield from run.finish()

    def live(self, *, ofd: bool = True, cutout: bool = False,
             background: Optional[Background] = None, with_image: bool = False,
             matte: bool = True) -> "VideoRun":
        """A video fed one frame at a time (a live source): ``push(frame)`` returns the results
        ready (with ``ofd``, the previous frame's), ``finish()`` the frame held back. The same
        programs and rules as ``video``, one frame per call on the first device (lowest
        latency)."""
        return VideoRun(self, ofd=ofd, cutout=cutout, background=background,
                        with_image=with_image, matte=matte, live=True)

    # ------------------------------------------------------------------ reporting

    def compile_summary(self) -> str:
        """One line: XLA compiles and persistent-cache loads since this engine was made."""
        compiles, hits, seconds = (_COMPILES[k] - self._counted[k] for k in _COMPILES)
        return (f"{compiles - hits} programs compiled, {hits} loaded from the compile cache "
                f"({seconds:.1f} s)")


class VideoRun:
    """One video's state on the device (``MattingEngine.video`` / ``live``): the OFD carry (the
    raw mattes of the last two frames and the frame held back) and the outputs asked for."""

    def __init__(self, engine: MattingEngine, *, ofd: bool, cutout: bool,
                 background: Optional[Background], with_image: bool, matte: bool,
                 live: bool = False):
        self.engine, self.ofd, self.background = engine, ofd, background
        self.split = engine._mesh is not None and not live
        self.batch_size = 1 if live else engine.video_batch_size
        self.static = dict(cutout=cutout, with_image=with_image, with_matte=matte)
        self.shape: Optional[tuple] = None
        self.carry = None
        self.first, self.full_last = True, False

    def check(self, frame: np.ndarray) -> np.ndarray:
        """The frame as RGB uint8; ``InputError`` if too large or of another size."""
        frame = self.engine._frame(frame)
        if self.shape is not None and frame.shape != self.shape:
            raise InputError(f"frame size changed from {self.shape[1]}x{self.shape[0]} to "
                             f"{frame.shape[1]}x{frame.shape[0]}")
        if self.shape is None:
            self.shape = frame.shape
            h, w = frame.shape[:2]
            self.carry = jax.device_put((np.zeros((2, h, w), np.float32),
                                         np.zeros((1, h, w, 3), np.uint8)),
                                        self.engine.devices[0])
            self.bg = self.engine._background(self.background, h, w)
        return frame

    def dispatch(self, batch: List[np.ndarray]):
        """Start one batch (padded with copies of its last frame); returns (device outputs,
        first index to hand out, end index)."""
        eng, n, bsz = self.engine, len(batch), self.batch_size
        dev0 = eng.devices[0]
        # Explicit transfers only: the loop may run under jax.transfer_guard("disallow").
        host = np.stack(batch + [batch[-1]] * (bsz - n))
        mesh = eng._mesh if self.split else None
        frames_at = NamedSharding(mesh, PartitionSpec("frames")) if mesh is not None else dev0
        raw = programs.video_raw(eng._variables(self.split), jax.device_put(host, frames_at),
                                 eng._taps(*host.shape[1:3], self.split), model=eng.model,
                                 mesh=mesh)
        if mesh is not None:
            raw = jax.device_put(raw, dev0)  # OFD and the outputs on the first device
        frames = jax.device_put(host, dev0)
        first = jax.device_put(np.bool_(self.first), dev0)
        res, self.carry = programs.video_finish(
            raw, frames, self.carry[0], self.carry[1], first, self.bg,
            threshold=eng.ofd_threshold, ofd=self.ofd, **self.static)
        _copy_to_host_async(res)
        if not self.ofd:
            return res, 0, n
        start = 1 if self.first else 0
        self.first, self.full_last = False, n == bsz
        return res, start, (bsz if n == bsz else n + 1)

    @staticmethod
    def fetch(dispatched) -> List[Matted]:
        res, start, end = dispatched
        host = jax.device_get(res)
        return [Matted(**{k: v[i] for k, v in host.items()}) for i in range(start, end)]

    def push(self, frame: np.ndarray) -> List[Matted]:
        """Matte one frame now; the results ready (with OFD: the previous frame's)."""
        return self.fetch(self.dispatch([self.check(frame)]))

    def finish(self) -> List[Matted]:
        """The frame OFD holds back at the end (its matte unchanged); then a new stream."""
        out = []
        if self.ofd and self.full_last:
            out = self.fetch((programs.video_flush(self.carry[0], self.carry[1], self.bg,
                                                   **self.static), 0, 1))
        self.shape, self.first, self.full_last = None, True, False
        return out


def _copy_to_host_async(tree) -> None:
    """Start copying results to the host as soon as they are computed, so that the caller's
    ``device_get`` a batch later finds them there instead of copying while the device waits."""
    for leaf in jax.tree.leaves(tree):
        leaf.copy_to_host_async()
