"""``MattingEngine``: frames in (uint8 RGB of any size), mattes / cut-outs / composites out.

    engine = MattingEngine.from_checkpoint("runs/ppm/checkpoints")
    mattes = engine.matte(frames)                        # [B, H, W, 3] uint8 -> [B, H, W]
    for key, result in engine.images(((p, read_image(p)) for p in paths), background=(0, 255, 0)):
        ...                                              # result: Matted or InputError
    for result in engine.video(frames, ofd=True, background=(255, 255, 255)):
        ...                                              # one Matted per frame, one frame late

Everything between decode and encode runs on the device: the area resize to the model input
size and the normalisation, the model, the resize back, One-Frame Delay and the composite. The
results equal the release's pre-processing done on the host (``preprocess.preprocess`` ->
model -> ``preprocess.postprocess`` -> ``ofd.OneFrameDelay``) to float32 rounding.

Compiled programs: a video compiles one program per frame size (``programs.video_step``).
Photos share model programs through canvases (``canvases=True``, the default): the model runs
on a zero-padded canvas told each photo's valid size (``models.canvas``), which gives the
mattes of the photo's own size, so one compiled model serves every model input size that fits
its canvas. On a CPU compiling the model costs as much as matting ~10 photos, while the
per-size programs around it (area resize onto the canvas; resize back and outputs) compile in
a fraction of a second. Which canvas a size uses is ``canvas_policy.py``'s choice; it depends
only on the order of the sizes, so a second run of the same folder compiles nothing.
``canvases=False``: one fused program per image size (the resize, the model at the exact
size, the resize back and outputs; a second one at ``batch_size`` for a size whose photos come
``batch_size`` at a time, see ``images``). With several ``devices`` a video batch is one
program sharded by frame across them (``host_devices.py`` says why that pays on a CPU).
With the persistent cache (``compile_cache.py``) a second run compiles nothing, and with the
traced programs kept beside it (``export_cache.py``) it does not trace the model either;
``compile_summary()`` says what was compiled and how long it took. ``warm_up(sizes)`` starts
compiling, on background threads (``compiled.py``), what photos of the given sizes will need,
so a folder's compiles overlap its start instead of waiting for each photo.

Bounded memory: the model input follows the release's rule capped by ``max_long_side`` and
``max_pixels`` (``preprocess.model_input_size``); an image above ``max_image_pixels`` is refused
with a one-line ``InputError``. While photos wait for a batch, at most ``batch_size`` of them per
image size and ``max_pending`` in all are held; one batch at a time is in flight while the
caller handles the previous one (so the device works while the caller encodes).
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import (Any, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple,
                    Union)

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from modnet_jax.inference import programs
from modnet_jax.inference.canvas_policy import REFIT, CanvasPolicy
from modnet_jax.inference.checkpoint import load_checked_variables
from modnet_jax.inference.compiled import Programs
from modnet_jax.inference.images import Background, InputError, background_for, matte_to_uint8
from modnet_jax.inference.ofd import OFD_THRESHOLD
from modnet_jax.inference.options import MAX_IMAGE_PIXELS
from modnet_jax.inference.preprocess import MAX_LONG_SIDE, MAX_PIXELS, REF_SIZE
from modnet_jax.inference.preprocess import model_input_size, to_rgb_uint8
from modnet_jax.inference.resize import make_taps
from modnet_jax.models import model_from_config

WARM_UP_PHOTOS = 64


@dataclass
class Matted:
    """One frame's results: ``matte`` [H, W] float32 in [0, 1] (None from ``video(...,
    matte=False)``); RGBA ``cutout``, RGB ``composite`` and the frame itself (``image``)
    [H, W, C] uint8 when asked for."""

    matte: Optional[np.ndarray] = None
    cutout: Optional[np.ndarray] = None
    composite: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None  # the RGB frame, with ``with_image=True``

    @property
    def matte_uint8(self) -> np.ndarray:
        return matte_to_uint8(self.matte)


class MattingEngine:
    """A MODNet and its variables, run end to end on the device (see the module docstring).

    ``ref_size``: the release's reference short side; ``batch_size``: photos of one size per
    model call; ``video_batch_size``: video frames per model call (default ``batch_size``; on
    our 2-core CPU larger batches were slower per frame, see ``host_devices.py``, while a
    GPU wants them); ``resize_back``: "area" (the release) or "bilinear" (OpenCV's linear);
    the caps bound memory; ``ofd_threshold``: One-Frame Delay's flicker threshold.

    ``devices``: where programs run (default: JAX's first device). With several (e.g. the CPU
    split into host devices by ``host_devices.py``, or several GPUs), a video batch is split
    across them, each device matting its share of the frames at the same time (one program,
    compiled once; ``video_batch_size`` is rounded up to a multiple of the device count).
    Photos on canvases are shared the same way, one per device (``images``); everything else
    runs on the first device.

    ``canvases``: photos of different sizes share compiled model programs (the module
    docstring says how, and that the mattes do not change); ``canvas_refit``: photos' worth of
    padding after which a size gets a canvas of its own.
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
        self._host_variables = {"params": variables["params"],
                                "batch_stats": variables.get("batch_stats", {})}
        self.variables = jax.device_put(self._host_variables, self.devices[0])
        self.ref_size = int(ref_size)
        self.batch_size = int(batch_size)
        n_dev = len(self.devices)
        self.video_batch_size = -(-int(video_batch_size or batch_size) // n_dev) * n_dev
        # Video on several devices: frames split along the batch, the rest replicated.
        self._mesh = Mesh(np.array(self.devices), ("frames",)) if n_dev > 1 else None
        self._by_frame = (NamedSharding(self._mesh, PartitionSpec("frames"))
                          if self._mesh is not None else None)  # one batch slice per device
        self._replicated_variables = None
        self.resize_back = resize_back
        self.max_long_side = int(max_long_side)
        self.max_pixels = int(max_pixels)
        self.max_image_pixels = int(max_image_pixels)
        self.ofd_threshold = float(ofd_threshold)
        self.max_pending = max(int(max_pending or 2 * self.batch_size), self.batch_size)
        self.programs = Programs()
        self.canvas_policy = CanvasPolicy(canvases, canvas_refit, max_pixels=self.max_pixels,
                                          max_long_side=self.max_long_side)
        self.model_shapes: List[Tuple[int, int, int]] = []
        self._taps: Dict[Tuple[int, int, str], Any] = {}
        self._backgrounds: "OrderedDict[Hashable, Any]" = OrderedDict()

    @classmethod
    def from_checkpoint(cls, checkpoint: str, model_cfg: Optional[dict] = None,
                        step: Optional[int] = None, **kwargs) -> "MattingEngine":
        """Raises ``CheckpointError`` (one line) for a missing, damaged or mismatched checkpoint."""
        model = model_from_config(model_cfg)
        return cls(model, load_checked_variables(model, checkpoint, step), **kwargs)

    # ------------------------------------------------------------------ sizes and tables

    def input_size(self, height: int, width: int) -> Tuple[int, int]:
        """(rh, rw) the model runs at: the release's rule within the caps."""
        return model_input_size(height, width, self.ref_size, self.max_long_side,
                                self.max_pixels)

    def canvas_for(self, rh: int, rw: int, count: int = 1) -> Tuple[int, int]:
        """The canvas (height, width) that ``count`` photos of model input size rh x rw run on
        next (``canvas_policy.py``); (rh, rw) with canvases off."""
        return self.canvas_policy.choose(rh, rw, count)

    def check_size(self, height: int, width: int) -> None:
        """Raise ``InputError`` if an image this size is above ``max_image_pixels``."""
        if height * width > self.max_image_pixels:
            raise InputError(f"{width}x{height} image ({height * width / 1e6:.0f} MP) is above "
                             f"the limit of {self.max_image_pixels / 1e6:g} MP "
                             f"(--max-image-pixels)")

    def _placement(self, shared: bool):
        """Where an array used by every device goes: the first device, or (``shared``, for a
        video on several devices) replicated over all of them."""
        if shared and self._mesh is not None:
            return NamedSharding(self._mesh, PartitionSpec())
        return self.devices[0]

    def _variables_for(self, shared: bool):
        if not (shared and self._mesh is not None):
            return self.variables
        if self._replicated_variables is None:
            self._replicated_variables = jax.device_put(self._host_variables,
                                                        self._placement(True))
        return self._replicated_variables

    def _device_taps(self, n_in: int, n_out: int, mode: str, shared: bool = False):
        key = (n_in, n_out, mode, shared)
        if key not in self._taps:
            self._taps[key] = jax.device_put(make_taps(n_in, n_out, mode),
                                             self._placement(shared))
        return self._taps[key]

    def _taps_for(self, h: int, w: int, shared: bool = False):
        rh, rw = self.input_size(h, w)
        return (self._device_taps(h, rh, "area", shared), self._device_taps(w, rw, "area", shared),
                self._device_taps(rh, h, self.resize_back, shared),
                self._device_taps(rw, w, self.resize_back, shared))

    def _background(self, background: Optional[Background], h: int, w: int,
                    shared: bool = False):
        """Device float32 [3] for a colour, [H, W, 3] for an image (the last few sizes kept)."""
        if background is None:
            return None
        is_image = isinstance(background, np.ndarray)
        key = ((id(background), h, w) if is_image else tuple(background), shared)
        if key not in self._backgrounds:
            host = (background_for(background, h, w) if is_image
                    else np.asarray(background, np.float32))
            self._backgrounds[key] = jax.device_put(host, self._placement(shared))
            while len(self._backgrounds) > 4:
                self._backgrounds.popitem(last=False)
        return self._backgrounds[key]

    def _frame(self, image: np.ndarray, key: Hashable = None) -> np.ndarray:
        try:
            image = to_rgb_uint8(image)
        except ValueError as exc:
            raise InputError(f"{key}: {exc}" if key is not None else str(exc)) from None
        try:
            self.check_size(*image.shape[:2])
        except InputError as exc:
            raise InputError(f"{key}: {exc}" if key is not None else str(exc)) from None
        return image

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
        """Yield (key, ``Matted``) for (key, RGB image) pairs, batching equal image sizes.

        Each photo runs through one program for its image size (resize, model, resize back,
        cut-out / composite). Photos of the same size are held until ``batch_size`` of them
        make a full batch; when ``max_pending`` photos are held, the oldest size's photos run
        one by one, as do the leftovers at the end. So each image size compiles at most two
        programs (batch 1, and ``batch_size`` when that many of its photos come close
        together), and a folder of mixed sizes compiles one program per size.

        With canvases on several devices (``split_photos``), photos are grouped by canvas
        instead, one per device: each device mattes one photo of a batch at the same time
        (one sharded model program per canvas; a last, incomplete batch is filled with copies
        of its last photo, whose results are dropped).

        Results come as batches finish, not in input order. A per-item problem (an image
        above the pixel limit, or an ``Exception`` given instead of an image, e.g. by a reader
        that could not decode a file) is yielded as (key, InputError), so a folder always runs
        to its end.

        ``warm_up`` beforehand with the photos' sizes lets compiling start before they come.
        """
        try:
            yield from self._images(items, cutout, background, with_image)
        finally:
            self.programs.cancel_pending()  # what ``warm_up`` asked for and no photo needed

    def _images(self, items, cutout: bool, background: Optional[Background],
                with_image: bool) -> Iterator[Tuple[Hashable, Union[Matted, InputError]]]:
        buckets: "OrderedDict[Tuple[int, int], list]" = OrderedDict()
        held = 0
        in_flight: List[list] = []
        options = (cutout, with_image)

        split = self.split_photos
        group = len(self.devices) if split else self.batch_size

        def dispatch(bucket: list):
            if split:
                in_flight.append(self._run_split(bucket, background, options))
            else:
                batches = [bucket] if len(bucket) == self.batch_size else [[i] for i in bucket]
                for items_ in batches:
                    in_flight.append(self._run_photos(items_, background, options))
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
            if split:
                size = self.input_size(*image.shape[:2])
                where = self.canvas_for(*size)
                item = (key, image, size, where)
            else:
                where, item = image.shape[:2], (key, image)
            bucket = buckets.setdefault(where, [])
            bucket.append(item)
            held += 1
            if len(bucket) >= group:
                held -= len(bucket)
                yield from dispatch(buckets.pop(where))
            elif held >= self.max_pending:
                oldest = next(iter(buckets))
                held -= len(buckets[oldest])
                yield from dispatch(buckets.pop(oldest))
        for size in list(buckets):
            yield from dispatch(buckets.pop(size))
        for batch in in_flight:
            for entry in batch:
                yield from self._fetch(entry)

    @property
    def canvases(self) -> bool:
        """Whether photos run on shared canvases (the ``canvases`` option)."""
        return self.canvas_policy.enabled

    @property
    def split_photos(self) -> bool:
        """Whether photos are shared among several devices (canvases on, > 1 device)."""
        return self.canvases and len(self.devices) > 1

    def warm_up(self, sizes: Iterable[Optional[Tuple[int, int]]], *, cutout: bool = False,
                background: Optional[Background] = None, with_image: bool = False,
                limit: int = WARM_UP_PHOTOS) -> int:
        """Start compiling, on background threads, the programs ``images`` will need for
        photos of these (height, width) sizes, given in the order ``images`` will get them (e.g.
        from the files' headers; None: unknown, skipped), with the options ``images`` will get.
        Returns how many programs were asked for (``compiled.Programs.prefetch``).

        Only the first ``limit`` sizes are looked at, up to the first unknown one, and only
        when photos are shared among devices (``split_photos``), where each photo runs alone
        through programs that follow from its size and the canvases chosen before it: the
        canvas policy is played forward on a copy, so the canvases are the ones ``images``
        will choose as long as the photos come as announced. Otherwise nothing happens. A
        photo announced but not given (e.g. one that fails to decode) can make later plans
        differ; that costs compiles, never results: ``images`` only runs what it needs.
        Compiles no photo needed are cancelled when ``images`` ends (call
        ``programs.cancel_pending()`` if it is not called).
        """
        if not self.split_photos:
            return 0
        policy = copy.deepcopy(self.canvas_policy)
        before = self.programs.asked
        try:
            for hw in itertools.islice(sizes, max(0, int(limit))):
                if hw is None:
                    break  # its canvas choice is unknown, and so are the ones after it
                if min(hw) < 1 or hw[0] * hw[1] > self.max_image_pixels:
                    continue  # refused by ``images`` before any canvas is chosen
                h, w = int(hw[0]), int(hw[1])
                size = self.input_size(h, w)
                self._prefetch_photo(h, w, size, policy.choose(*size),
                                     (cutout, with_image), background)
        except BaseException:  # e.g. interrupted while reading headers: nothing left queued
            self.programs.cancel_pending()
            raise
        return self.programs.asked - before

    def _prefetch_photo(self, h: int, w: int, size: Tuple[int, int], canvas: Tuple[int, int],
                        options: Tuple[bool, bool], background: Optional[Background]) -> None:
        """Ask for the three programs ``_run_on_canvas`` runs for one photo per device, with
        abstract arguments shaped and placed like its real ones."""
        dev0 = SingleDeviceSharding(self.devices[0])
        frames = self._by_frame
        n_dev = len(self.devices)
        taps = self._taps_for(h, w)
        images = jax.ShapeDtypeStruct((1, h, w, 3), np.uint8, sharding=dev0)
        x = jax.ShapeDtypeStruct((n_dev,) + canvas + (3,), np.float32, sharding=frames)
        sizes = jax.ShapeDtypeStruct((n_dev, 2), np.int32, sharding=frames)
        mattes = jax.ShapeDtypeStruct((1,) + canvas, np.float32, sharding=dev0)
        if isinstance(background, np.ndarray):  # its resized copy is made when needed
            bg = jax.ShapeDtypeStruct((h, w, 3), np.float32, sharding=dev0)
        else:
            bg = self._background(background, h, w)
        for call in (self._photo_in_call(images, taps, canvas),
                     self._canvas_model_call(x, sizes, split=True),
                     self._photo_out_call(images, mattes, taps, bg, size, options)):
            self.programs.prefetch(*call)

    # The programs of a canvas batch as (name, fn, args, static options, label), for
    # ``programs.run`` with arrays and ``programs.prefetch`` with abstract ones (``warm_up``).

    def _photo_in_call(self, images, taps, canvas: Tuple[int, int]) -> tuple:
        b, h, w = images.shape[:3]
        return ("photo_in", programs.to_canvas, (images, taps[0], taps[1]),
                (("canvas", canvas),), f"{b}x{h}x{w}")

    def _canvas_model_call(self, x, sizes, split: bool) -> tuple:
        n, ch, cw = x.shape[:3]
        return ("canvas_model", programs.canvas_model, (self._variables_for(split), x, sizes),
                (("model", self.model), ("mesh", self._mesh if split else None)),
                f"{n}x{ch}x{cw}")

    def _photo_out_call(self, images, mattes, taps, background, size: Tuple[int, int],
                        options: Tuple[bool, bool]) -> tuple:
        b, h, w = images.shape[:3]
        return ("photo_out", programs.photo_out, (images, mattes, taps[2], taps[3], background),
                (("size", size), ("cutout", options[0]), ("with_image", options[1])),
                f"{b}x{h}x{w}")

    def _run_split(self, bucket: list, background: Optional[Background],
                   options: Tuple[bool, bool]) -> list:
        """Photos (key, image, model size, canvas) of one canvas, one per device (the batch
        filled with copies of the last); returns one (keys, device results) per photo."""
        groups = [([key], image[None], size) for key, image, size, _ in bucket]
        return self._run_on_canvas(groups, bucket[0][3], background, options, split=True)

    def _run_photos(self, bucket: list, background: Optional[Background],
                    options: Tuple[bool, bool]) -> list:
        """Photos (key, image) of one size as one batch on the first device; returns
        [(keys, device results)]."""
        b = len(bucket)
        h, w = bucket[0][1].shape[:2]
        keys = [item[0] for item in bucket]
        host = bucket[0][1][None] if b == 1 else np.stack([item[1] for item in bucket])
        size = self.input_size(h, w)
        if self.canvases:
            return self._run_on_canvas([(keys, host, size)], self.canvas_for(*size, b),
                                       background, options)
        self._note_model_shape(b, size)
        images = jax.device_put(host, self.devices[0])
        res = self.programs.run(
            "photo", programs.photo,
            (self.variables, images, self._taps_for(h, w), self._background(background, h, w)),
            (("model", self.model), ("cutout", options[0]), ("with_image", options[1])),
            label=f"{b}x{h}x{w}")
        _copy_to_host_async(res)
        return [(keys, res)]

    def _run_on_canvas(self, groups: list, canvas: Tuple[int, int],
                       background: Optional[Background], options: Tuple[bool, bool],
                       split: bool = False) -> list:
        """Groups (keys, uint8 photos [b, h, w, 3] of one size, their model input size) on one
        canvas: each group onto the canvas (a program per image size), one model call for all
        of them, each group off the canvas and its outputs (per image size). ``split``: one
        group of one photo per device, the model sharded over the devices (missing groups are
        copies of the last, their results dropped). Returns (keys, device results) per group."""
        dev0 = self.devices[0]
        placed, xs = [], []
        for _, host, _ in groups:
            h, w = host.shape[1:3]
            images, taps = jax.device_put(host, dev0), self._taps_for(h, w)
            xs.append(self.programs.run(*self._photo_in_call(images, taps, canvas)))
            placed.append((images, taps))
        sizes = np.array([size for _, host, size in groups for _ in range(len(host))], np.int32)
        if split:
            pad = len(self.devices) - len(groups)
            sizes = np.concatenate([sizes, np.repeat(sizes[-1:], pad, axis=0)])
            at = self._by_frame
            shards = [jax.device_put(x, d) for x, d in zip(xs + xs[-1:] * pad, self.devices)]
            x = jax.make_array_from_single_device_arrays((len(sizes),) + canvas + (3,), at,
                                                         shards)
        else:
            at, x = dev0, xs[0]
        self._note_model_shape(len(sizes), canvas)
        mattes = self.programs.run(
            *self._canvas_model_call(x, jax.device_put(sizes, at), split))
        parts = [mattes]
        if split:  # each photo's matte back to the first device, in batch order
            shards = sorted(mattes.addressable_shards, key=lambda sh: sh.index[0].start or 0)
            parts = [jax.device_put(sh.data, dev0) for sh in shards]
        out = []
        for (keys, _, size), (images, taps), part in zip(groups, placed, parts):
            h, w = images.shape[1:3]
            res = self.programs.run(*self._photo_out_call(
                images, part, taps, self._background(background, h, w), size, options))
            _copy_to_host_async(res)
            out.append((keys, res))
        return out

    def _note_model_shape(self, batch: int, size: Tuple[int, int]) -> None:
        if (batch,) + tuple(size) not in self.model_shapes:
            self.model_shapes.append((batch,) + tuple(size))

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

        ``matte=False``: results without the float matte (e.g. when only composites are
        written), which saves copying 4 bytes per pixel and frame to the host.

        Frames run ``video_batch_size`` at a time; with ``ofd`` (One-Frame Delay) each result comes
        one frame late, exactly as ``ofd.OneFrameDelay`` over the per-frame mattes would give,
        batch seams included. Raises ``InputError`` if the frame size changes mid-stream.
        """
        bsz = self.video_batch_size
        state: Dict[str, Any] = {}
        pending = None
        batch: List[np.ndarray] = []
        for frame in frames:
            frame = self._frame(frame)
            if state and frame.shape != state["shape"]:
                raise InputError(f"frame size changed from {state['shape'][1]}x"
                                 f"{state['shape'][0]} to {frame.shape[1]}x{frame.shape[0]}")
            if not state:
                state = self._video_state(frame.shape, ofd, (cutout, with_image, matte),
                                          background)
            batch.append(frame)
            if len(batch) == bsz:
                dispatched = self._video_batch(state, batch)
                batch = []
                if pending is not None:
                    yield from self._video_fetch(pending)
                pending = dispatched
        if batch:
            dispatched = self._video_batch(state, batch)
            if pending is not None:
                yield from self._video_fetch(pending)
            pending = dispatched
        if pending is not None:
            yield from self._video_fetch(pending)
        if ofd and state and state["full_last"]:
            yield from self._video_fetch((self._video_flush(state), 0, 1))

    def _video_state(self, shape, ofd: bool, options: Tuple[bool, bool, bool], background
                     ) -> Dict[str, Any]:
        """Per-stream state. On several devices with OFD, each batch runs as two programs:
        ``video_raw`` shared by the devices, then ``video_finish`` (OFD and outputs) on the
        first device, which holds the carry: within one sharded program, OFD's look at the
        neighbouring frames made XLA move frames between the devices, which cost ~10% (23 ms
        per 720p frame on our 2-core CPU); copying the raw mattes costs ~1 ms."""
        h, w = shape[:2]
        split = self._mesh is not None and ofd
        carry = jax.device_put((np.zeros((2, h, w), np.float32), np.zeros((1, h, w, 3), np.uint8)),
                               self._placement(not split))
        self._note_model_shape(self.video_batch_size, self.input_size(h, w))
        frames_at = self._by_frame if self._mesh is not None else self.devices[0]
        finish = (("threshold", self.ofd_threshold), ("ofd", ofd), ("cutout", options[0]),
                  ("with_image", options[1]), ("with_matte", options[2]))
        return {"shape": shape, "taps": self._taps_for(h, w, True), "carry": carry,
                "first": True, "bg": self._background(background, h, w, not split),
                "full_last": False, "frames_at": frames_at, "split": split,
                "static": (("model", self.model),) + finish + (("mesh", self._mesh),),
                "raw_static": (("model", self.model), ("mesh", self._mesh)),
                "finish_static": finish,
                "ofd": ofd, "label": f"{self.video_batch_size}x{h}x{w}"}

    def _video_batch(self, state: Dict[str, Any], batch: List[np.ndarray]):
        """Dispatch one batch; returns (device outputs, first index to emit, end index)."""
        n, bsz = len(batch), self.video_batch_size
        # Explicit transfers (frames, flag): the loop runs under jax.transfer_guard("disallow").
        host = np.stack(batch + [batch[-1]] * (bsz - n))
        frames = jax.device_put(host, state["frames_at"])
        first = jax.device_put(np.bool_(state["first"]), self._placement(not state["split"]))
        if state["split"]:
            raw = self.programs.run("video_raw", programs.video_raw_split,
                                    (self._variables_for(True), frames, state["taps"]),
                                    static=state["raw_static"], label=state["label"])
            raw, frames = jax.device_put((raw, host), self.devices[0])
            res, state["carry"] = self.programs.run(
                "video_finish", programs.video_finish,
                (raw, frames, state["carry"][0], state["carry"][1], first, state["bg"]),
                static=state["finish_static"], label=state["label"])
        else:
            args = (self._variables_for(True), frames, state["carry"][0], state["carry"][1],
                    first, state["taps"], state["bg"])
            res, state["carry"] = self.programs.run("video_step", programs.video_program, args,
                                                    static=state["static"], label=state["label"])
        _copy_to_host_async(res)
        if not state["ofd"]:
            return res, 0, n
        start = 1 if state["first"] else 0
        state["first"] = False
        state["full_last"] = n == bsz
        return res, start, (bsz if n == bsz else n + 1)

    def _video_flush(self, state: Dict[str, Any]):
        """Outputs of the frame held back at the end of a stream (its raw matte unchanged).

        Split over devices, this reuses the compiled ``video_finish`` on a batch of copies of
        the held-back frame and matte (its "next" is then itself, so OFD leaves it as it is, as
        ``programs.video_flush`` does): output 0 is the frame, and nothing more compiles."""
        carry_mattes, carry_frame = state["carry"]
        if not state["split"]:
            return self.programs.run("video_flush", programs.video_flush,
                                     (carry_mattes, carry_frame, state["bg"]),
                                     static=state["finish_static"][2:], label=state["label"])
        bsz = self.video_batch_size
        mattes, last_frame = jax.device_get((carry_mattes, carry_frame))
        raw, frames, first = jax.device_put(
            (np.repeat(mattes[1:], bsz, axis=0), np.repeat(last_frame, bsz, axis=0),
             np.bool_(False)), self.devices[0])
        res, _ = self.programs.run(
            "video_finish", programs.video_finish,
            (raw, frames, carry_mattes, carry_frame, first, state["bg"]),
            static=state["finish_static"], label=state["label"])
        return res

    @staticmethod
    def _video_fetch(dispatched) -> Iterator[Matted]:
        res, start, end = dispatched
        host = jax.device_get(res)
        for i in range(start, end):
            yield Matted(**{k: v[i] for k, v in host.items()})

    # ------------------------------------------------------------------ reporting

    def compile_summary(self) -> str:
        """One line: programs compiled / loaded from the persistent cache, the time it took
        (summed over the threads that compiled), how many started ahead, model shapes."""
        p = self.programs
        shapes = ", ".join(f"{b}x{h}x{w}" for b, h, w in self.model_shapes) or "none"
        ahead = f"; {p.ahead} compiled ahead of need" if p.ahead else ""
        return (f"{len(p.compiled)} programs compiled, {len(p.loaded)} loaded from the compile "
                f"cache ({p.seconds:.1f} s{ahead}); model shapes (batch x H x W"
                f"{', canvases for photos' if self.canvases else ''}): {shapes}")


def _copy_to_host_async(tree) -> None:
    """Start copying results to the host as soon as they are computed, so that the caller's
    ``device_get`` a batch later finds them there instead of copying while the device waits."""
    for leaf in jax.tree.leaves(tree):
        leaf.copy_to_host_async()

