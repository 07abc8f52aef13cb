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

Compiled programs: a video compiles one program per frame size (``programs.video_step``). For
photos the model program is compiled per model input size and batch (equal model sizes are
batched together, up to ``batch_size``), and two small resize programs per image size, so a
folder of many image sizes compiles the model only for the few sizes the resize rule yields.
With the persistent cache (``compile_cache.py``) a second run compiles nothing;
``compile_summary()`` says what was compiled and how long it took.

Bounded memory: the model input follows the release's rule capped by ``max_long_side`` and
``max_pixels`` (``preprocess.model_input_size``); an image above ``max_image_pixels`` is refused
with a one-line ``InputError``. While photos wait for a batch, at most ``batch_size`` of them per
model size and ``max_pending`` in all are held; one batch at a time is in flight while the
caller handles the previous one (so the device works while the caller encodes).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple, Union

import jax
import numpy as np

from modnet_jax.inference import programs
from modnet_jax.inference.checkpoint import load_checked_variables
from modnet_jax.inference.compile_cache import cache_hits
from modnet_jax.inference.images import Background, InputError, background_for, matte_to_uint8
from modnet_jax.inference.ofd import OFD_THRESHOLD
from modnet_jax.inference.preprocess import MAX_LONG_SIDE, MAX_PIXELS, REF_SIZE
from modnet_jax.inference.preprocess import model_input_size, to_rgb_uint8
from modnet_jax.inference.resize import make_taps
from modnet_jax.models import model_from_config

MAX_IMAGE_PIXELS = 120_000_000


@dataclass
class Matted:
    """One frame's results: ``matte`` [H, W] float32 in [0, 1]; RGBA ``cutout``, RGB
    ``composite`` and the frame itself (``image``) [H, W, C] uint8 when asked for."""

    matte: np.ndarray
    cutout: Optional[np.ndarray] = None
    composite: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None  # the RGB frame, with ``with_image=True``

    @property
    def matte_uint8(self) -> np.ndarray:
        return matte_to_uint8(self.matte)


def padded_batch(n: int, batch_size: int) -> int:
    """The compiled batch size for ``n`` <= ``batch_size`` inputs (next power of two, capped)."""
    b = 1
    while b < n:
        b *= 2
    return min(b, batch_size)


class _Programs:
    """Compiled programs keyed by name, static options and argument shapes; counts compiles."""

    def __init__(self):
        self._exe: Dict[Hashable, Any] = {}
        self.compiled: List[str] = []
        self.loaded: List[str] = []
        self.seconds = 0.0

    def run(self, name: str, fn, args: tuple, static: tuple = (), label: str = ""):
        leaves = jax.tree.leaves(args)
        key = (name, static, tuple((np.shape(x), np.dtype(x.dtype).str) for x in leaves))
        exe = self._exe.get(key)
        if exe is None:
            hits, start = cache_hits(), time.perf_counter()
            exe = jax.jit(partial(fn, **dict(static))).lower(*args).compile()
            self.seconds += time.perf_counter() - start
            (self.loaded if cache_hits() > hits else self.compiled).append(
                f"{name} {label}".strip())
            self._exe[key] = exe
        return exe(*args)


class MattingEngine:
    """A MODNet and its variables, run end to end on the device (see the module docstring).

    ``ref_size``: the release's reference short side; ``batch_size``: frames / photos per model
    call; ``resize_back``: "area" (the release) or "bilinear" (OpenCV's linear); the caps bound
    memory; ``ofd_threshold``: One-Frame Delay's flicker threshold.
    """

    def __init__(self, model, variables: Dict[str, Any], *, ref_size: int = REF_SIZE,
                 batch_size: int = 4, resize_back: str = "area",
                 max_long_side: int = MAX_LONG_SIDE, max_pixels: int = MAX_PIXELS,
                 max_image_pixels: int = MAX_IMAGE_PIXELS,
                 ofd_threshold: float = OFD_THRESHOLD, max_pending: Optional[int] = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if resize_back not in ("area", "bilinear"):
            raise ValueError(f"resize_back must be 'area' or 'bilinear', got {resize_back!r}")
        self.model = model
        self.variables = jax.device_put({"params": variables["params"],
                                         "batch_stats": variables.get("batch_stats", {})})
        self.ref_size = int(ref_size)
        self.batch_size = int(batch_size)
        self.resize_back = resize_back
        self.max_long_side = int(max_long_side)
        self.max_pixels = int(max_pixels)
        self.max_image_pixels = int(max_image_pixels)
        self.ofd_threshold = float(ofd_threshold)
        self.max_pending = max(int(max_pending or 2 * self.batch_size), self.batch_size)
        self.programs = _Programs()
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

    def check_size(self, height: int, width: int) -> None:
        """Raise ``InputError`` if an image this size is above ``max_image_pixels``."""
        if height * width > self.max_image_pixels:
            raise InputError(f"{width}x{height} image ({height * width / 1e6:.0f} MP) is above "
                             f"the limit of {self.max_image_pixels / 1e6:g} MP "
                             f"(--max-image-pixels)")

    def _device_taps(self, n_in: int, n_out: int, mode: str):
        key = (n_in, n_out, mode)
        if key not in self._taps:
            self._taps[key] = jax.device_put(make_taps(n_in, n_out, mode))
        return self._taps[key]

    def _taps_for(self, h: int, w: int):
        rh, rw = self.input_size(h, w)
        return (self._device_taps(h, rh, "area"), self._device_taps(w, rw, "area"),
                self._device_taps(rh, h, self.resize_back),
                self._device_taps(rw, w, self.resize_back))

    def _background(self, background: Optional[Background], h: int, w: int):
        """Device float32 [3] for a colour, [H, W, 3] for an image (the last few sizes kept)."""
        if background is None:
            return None
        is_image = isinstance(background, np.ndarray)
        key = (id(background), h, w) if is_image else tuple(background)
        if key not in self._backgrounds:
            host = (background_for(background, h, w) if is_image
                    else np.asarray(background, np.float32))
            self._backgrounds[key] = jax.device_put(host)
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
        """Yield (key, ``Matted``) for (key, RGB image) pairs, batching equal model sizes.

        Results come as batches finish, not in input order. A per-item problem (an image
        above the pixel limit, or an ``Exception`` given instead of an image, e.g. by a reader
        that could not decode a file) is yielded as (key, InputError), so a folder always runs
        to its end.
        """
        buckets: "OrderedDict[Tuple[int, int], list]" = OrderedDict()
        held = 0
        in_flight: List[list] = []
        for key, image in items:
            if isinstance(image, Exception):
                yield key, image
                continue
            try:
                image = self._frame(image, key)
            except InputError as exc:
                yield key, exc
                continue
            h, w = image.shape[:2]
            taps = self._taps_for(h, w)
            dev = jax.device_put(image[None])
            x = self.programs.run("prepare", programs.prepare, (dev, taps[0], taps[1]),
                                  label=f"{h}x{w}")
            bucket = buckets.setdefault(x.shape[1:3], [])
            bucket.append((key, dev, x, taps, self._background(background, h, w)))
            held += 1
            if len(bucket) >= self.batch_size or held >= self.max_pending:
                size = x.shape[1:3] if len(bucket) >= self.batch_size else max(
                    buckets, key=lambda k: len(buckets[k]))
                held -= len(buckets[size])
                in_flight.append(self._run_bucket(buckets.pop(size), (cutout, with_image)))
                while len(in_flight) > 1:
                    yield from self._fetch(in_flight.pop(0))
        for size in list(buckets):
            in_flight.append(self._run_bucket(buckets.pop(size), (cutout, with_image)))
            while len(in_flight) > 1:
                yield from self._fetch(in_flight.pop(0))
        for batch in in_flight:
            yield from self._fetch(batch)

    def _run_bucket(self, bucket: list, options: Tuple[bool, bool]) -> list:
        """Dispatch the model and the resize back for one bucket; returns device results."""
        n = len(bucket)
        b = padded_batch(n, self.batch_size)
        xs = tuple(item[2] for item in bucket) + (bucket[-1][2],) * (b - n)
        rh, rw = xs[0].shape[1:3]
        if (b, rh, rw) not in self.model_shapes:
            self.model_shapes.append((b, rh, rw))
        mattes = self.programs.run("model", _model_program, (self.variables, xs),
                                   static=(("model", self.model),), label=f"{b}x{rh}x{rw}")
        out = []
        for (key, dev, _, taps, bg), m in zip(bucket, mattes):
            h, w = dev.shape[1:3]
            res = self.programs.run("restore", _restore_program, (m, dev, taps[2], taps[3], bg),
                                    static=(("cutout", options[0]), ("with_image", options[1])),
                                    label=f"{h}x{w}")
            out.append((key, res))
        return out

    @staticmethod
    def _fetch(batch: list) -> Iterator[Tuple[Hashable, Matted]]:
        for key, res in batch:
            yield key, Matted(**{k: v[0] for k, v in jax.device_get(res).items()})

    # ------------------------------------------------------------------ video

    def video(self, frames: Iterable[np.ndarray], *, ofd: bool = True, cutout: bool = False,
              background: Optional[Background] = None, with_image: bool = False
              ) -> Iterator[Matted]:
        """One ``Matted`` per frame, in order, for a stream of equal-size RGB frames.

        Frames run ``batch_size`` at a time; with ``ofd`` (One-Frame Delay) each result comes
        one frame late, exactly as ``ofd.OneFrameDelay`` over the per-frame mattes would give,
        batch seams included. Raises ``InputError`` if the frame size changes mid-stream.
        """
        bsz = self.batch_size
        state: Dict[str, Any] = {}
        pending = None
        batch: List[np.ndarray] = []
        for frame in frames:
            frame = self._frame(frame)
            if state and frame.shape != state["shape"]:
                raise InputError(f"frame size changed from {state['shape'][1]}x"
                                 f"{state['shape'][0]} to {frame.shape[1]}x{frame.shape[0]}")
            if not state:
                state = self._video_state(frame.shape, ofd, (cutout, with_image), background)
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
            res = self.programs.run("video_flush", programs.video_flush,
                                    (state["carry"][0], state["carry"][1], state["bg"]),
                                    static=(("cutout", cutout), ("with_image", with_image)),
                                    label=state["label"])
            yield from self._video_fetch((res, 0, 1))

    def _video_state(self, shape, ofd: bool, options: Tuple[bool, bool], background
                     ) -> Dict[str, Any]:
        h, w = shape[:2]
        carry = (jax.device_put(np.zeros((2, h, w), np.float32)),
                 jax.device_put(np.zeros((1, h, w, 3), np.uint8)))
        rh, rw = self.input_size(h, w)
        if (self.batch_size, rh, rw) not in self.model_shapes:
            self.model_shapes.append((self.batch_size, rh, rw))
        return {"shape": shape, "taps": self._taps_for(h, w), "carry": carry, "first": True,
                "bg": self._background(background, h, w), "full_last": False,
                "static": (("model", self.model), ("threshold", self.ofd_threshold),
                           ("ofd", ofd), ("cutout", options[0]), ("with_image", options[1])),
                "ofd": ofd, "label": f"{self.batch_size}x{h}x{w}"}

    def _video_batch(self, state: Dict[str, Any], batch: List[np.ndarray]):
        """Dispatch one batch; returns (device outputs, first index to emit, end index)."""
        n, bsz = len(batch), self.batch_size
        # Explicit transfers (frames, flag): the loop runs under jax.transfer_guard("disallow").
        frames, first = jax.device_put((np.stack(batch + [batch[-1]] * (bsz - n)),
                                        np.bool_(state["first"])))
        args = (self.variables, frames, state["carry"][0], state["carry"][1], first,
                state["taps"], state["bg"])
        res, state["carry"] = self.programs.run("video_step", _video_program, args,
                                                static=state["static"], label=state["label"])
        if not state["ofd"]:
            return res, 0, n
        start = 1 if state["first"] else 0
        state["first"] = False
        state["full_last"] = n == bsz
        return res, start, (bsz if n == bsz else n + 1)

    @staticmethod
    def _video_fetch(dispatched) -> Iterator[Matted]:
        res, start, end = dispatched
        host = jax.device_get(res)
        for i in range(start, end):
            yield Matted(**{k: v[i] for k, v in host.items()})

    # ------------------------------------------------------------------ reporting

    def compile_summary(self) -> str:
        """One line: programs compiled / loaded from the persistent cache, time, model shapes."""
        p = self.programs
        shapes = ", ".join(f"{b}x{h}x{w}" for b, h, w in self.model_shapes) or "none"
        return (f"{len(p.compiled)} programs compiled, {len(p.loaded)} loaded from the compile "
                f"cache ({p.seconds:.1f} s); model input shapes (batch x H x W): {shapes}")


def _model_program(variables, xs, *, model):
    import jax.numpy as jnp
    mattes = programs.model_mattes(model, variables, jnp.concatenate(xs))
    return tuple(mattes[i:i + 1] for i in range(len(xs)))


def _restore_program(matte, image, rows, cols, background, *, cutout, with_image):
    return programs.outputs(image, programs.restore(matte, rows, cols), background, cutout,
                            with_image)


def _video_program(variables, frames, carry_mattes, carry_frame, first, taps, background, *,
                   model, threshold, ofd, cutout, with_image):
    return programs.video_step(model, variables, frames, carry_mattes, carry_frame, first, taps,
                               background, threshold=threshold, ofd=ofd, cutout=cutout,
                               with_image=with_image)
