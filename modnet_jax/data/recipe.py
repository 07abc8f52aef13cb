"""The augmentation recipe's random draws: one function for the host and the device paths.

A training sample is decided by a handful of random numbers, drawn here in one fixed order
from the per-element Generator Grain hands the sample builder (so the stream is a function
of the seed and the element's position, and resumes exactly):

    crop window of the subject (random_window: zoom, centre, subject-biased search)
    flip of the subject               (only with flip=True)
    colour jitter: hue, sat, value    (only with color_jitter=True)
    background index, its window, its flip   (composited samples only)
    trimap band radius

Where the pixels are made is a separate question. The host path (`samples.SampleBuilder`)
crops, resizes, flips, jitters, composites and computes the trimap with OpenCV; the device
path hands over the crops (`precrop`, in fixed-size `canvases` per batch) and the draws as
numbers (`device_params`), and
`modnet_jax.device_augment` does the same steps inside the jitted train step. Both read the
same `Draws`, so the two paths cannot draw different recipes (tests/test_data_device.py holds
them equal pixel for pixel within the resize filters' rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from modnet_jax.data import augment, records
from modnet_jax.data.augment import Jitter, Window, draw_jitter
from modnet_jax.imaging.trimap import band_radius, random_band_radius

# The order of the numbers in `device_params` (float32 [len(PARAMS)] per sample).
PARAMS = ("side", "flip", "jitter", "hue_steps", "saturation", "value", "radius",
          "bg_side", "bg_flip")


@dataclass(frozen=True)
class Draws:
    """Everything random about one sample (or the fixed choices of an evaluation sample)."""

    window: Window
    flip: bool = False
    jitter: Optional[Jitter] = None
    bg_index: Optional[int] = None
    bg_window: Optional[Window] = None
    bg_flip: bool = False
    radius: int = 0


def draw_sample(opts, rng: Optional[np.random.Generator], index: int, alpha: Optional[np.ndarray],
                shape: tuple, bg_count: int = 0,
                background_shape: Optional[Callable[[int], tuple]] = None) -> Draws:
    """The draws of one sample. `opts`: a samples.SampleOptions; `rng` None (or
    opts.augment False): evaluation (centre crops, no flip or jitter, background by index,
    band at the middle of the range). `alpha`: the subject's matte for the subject-biased
    window (None: unlabelled); `shape`: (rows, cols) of the source image; `bg_count`: the
    number of backgrounds; `background_shape(i)`: loads background i (index modulo the
    count) and returns its (rows, cols), or None when the sample is not composited."""
    random = rng is not None and opts.augment
    rows, cols = shape
    if not random:
        window = augment.centre_window(rows, cols)
    elif alpha is None:
        window = augment.random_window(rows, cols, rng, opts.scale_range)
    else:
        window = augment.random_window(rows, cols, rng, opts.scale_range, alpha, opts.subject_bias)
    flip = bool(random and opts.flip and rng.random() < 0.5)
    if alpha is None:  # unlabelled: crop and flip only
        return Draws(window, flip)
    jitter = draw_jitter(rng, opts.jitter) if random and opts.color_jitter else None
    bg_index, bg_window, bg_flip = None, None, False
    if background_shape is not None:
        bg_index = int(rng.integers(bg_count)) if random else int(index)
        bg_rows, bg_cols = background_shape(bg_index)
        if random:
            bg_window = augment.random_window(bg_rows, bg_cols, rng, opts.scale_range)
            bg_flip = bool(opts.flip and rng.random() < 0.5)
        else:
            bg_window = augment.centre_window(bg_rows, bg_cols)
    if random:
        radius = random_band_radius(rng, opts.image_size, opts.trimap_kernel_range)
    else:
        radius = band_radius(opts.image_size, sum(opts.trimap_kernel_range) / 2)
    return Draws(window, flip, jitter, bg_index, bg_window, bg_flip, radius)


def max_radius(opts) -> int:
    """The widest trimap band the options can draw (the device stage's static bound)."""
    return band_radius(opts.image_size, max(opts.trimap_kernel_range))


def precrop_size(image_size: int, scale_range) -> int:
    """Side of the square the device path hands over: the largest crop a source whose
    short side is image_size x max(scale_range) gives (a prepared copy's default size), so
    such crops cross unresized."""
    return int(np.ceil(int(image_size) * max(1.0, float(max(scale_range)))))


@dataclass(frozen=True)
class Pieces:
    """A crop held as views laid side by side along `axis` (the strips of a prepared
    sample, records.StripArray.window), copied once, into its canvas (`canvases`)."""

    axis: int
    parts: tuple
    shape: tuple


def precrop(image, window: Window, size: int, image_size: int) -> tuple:
    """(uint8 [side, side, C] crop of `window`, side): a view of `image` where it allows,
    or a `Pieces` of a records.StripArray (the canvas a crop crosses in is made per
    batch, `canvases`). A crop larger than the canvas side `size` is resized to image_size
    here, as the host recipe resizes it (augment.crop_resize), and the device leaves it at
    that size. `image`: a numpy array or a records.StripArray."""
    channels = image.shape[2] if image.ndim == 3 else 1
    side = window.side
    if side > size:
        crop, side = augment.crop_resize(image, window, image_size), image_size
    elif isinstance(image, records.StripArray):
        axis, parts = image.window(window.y0, window.x0, side)
        parts = tuple(p.reshape(p.shape[:2] + (channels,)) for p in parts)
        return Pieces(axis, parts, (side, side, channels)), side
    else:
        crop = image[window.y0:window.y0 + side, window.x0:window.x0 + side]
    return crop.reshape(side, side, channels), side


def canvases(crops, size: int) -> np.ndarray:
    """Crops (arrays or `Pieces`) of side <= size -> uint8 [len(crops), size, size, C],
    each crop in the top-left corner of its canvas and zeros elsewhere (one copy of each
    crop)."""
    out = np.empty((len(crops), size, size, crops[0].shape[2]), np.uint8)
    for canvas, crop in zip(out, crops):
        side = crop.shape[0]
        if isinstance(crop, Pieces):
            start = 0
            for part in crop.parts:
                width = part.shape[crop.axis]
                if crop.axis == 0:
                    canvas[start:start + width, :side] = part
                else:
                    canvas[:side, start:start + width] = part
                start += width
        else:
            canvas[:side, :side] = crop
        canvas[side:] = 0
        canvas[:side, side:] = 0
    return out


def device_params(draws: Draws, side: int, bg_side: int = 0) -> np.ndarray:
    """The draws as the device stage reads them: float32 [len(PARAMS)] (crop sides in the
    canvas, as `precrop` returned them)."""
    jitter = draws.jitter
    values = dict(side=side, flip=draws.flip, jitter=jitter is not None,
                  hue_steps=jitter.hue_steps if jitter else 0,
                  saturation=jitter.saturation if jitter else 1.0,
                  value=jitter.value if jitter else 1.0, radius=draws.radius,
                  bg_side=bg_side, bg_flip=draws.bg_flip)
    return np.asarray([float(values[name]) for name in PARAMS], np.float32)
