"""Per-sample builders: the Grain transforms that turn a source index into a training sample.

One builder serves training (`random_map`: called with the per-element numpy Generator that
Grain seeds from the pipeline seed and the element's position, so the stream is
deterministic) and evaluation (`map`: called without a generator: centre crop, no flip or
jitter, fixed trimap band, background chosen by index).

A sample whose files turn out unusable at decode time is replaced by the next index of the
source (up to `max_retries` times), after reporting the file once. The replacement depends
only on which files are bad, so streams stay deterministic, and batches keep their shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modnet_jax.data import augment
from modnet_jax.data.augment import JitterRanges
from modnet_jax.data.cache import PACKED_KEY
from modnet_jax.data.report import DatasetError, UnusableFile, report_skip
from modnet_jax.imaging.compositing import composite, estimate_foreground
from modnet_jax.imaging.trimap import band_radius, make_trimap, random_band_radius


@dataclass(frozen=True)
class SampleOptions:
    """Everything a builder needs from the data config, resolved for one split."""

    image_size: int
    augment: bool = True
    scale_range: tuple = (1.0, 1.5)
    subject_bias: float = 0.8
    flip: bool = True
    color_jitter: bool = True
    jitter: JitterRanges = JitterRanges()
    trimap_kernel_range: tuple = (10.0, 20.0)
    trimap_fg_threshold: float = 0.9
    trimap_bg_threshold: float = 0.0
    recomposite: bool = False
    image_only: bool = False
    max_retries: int = 8


def load_with_fallback(source, index: int, max_retries: int, bad: set):
    """source[index], or the first usable source[index + k] for k <= max_retries."""
    size = len(source)
    reasons = []
    for attempt in range(max_retries + 1):
        position = (int(index) + attempt) % size
        if position in bad:
            continue
        try:
            return source[position]
        except UnusableFile as err:
            report_skip(err.path, err.reason)
            reasons.append(f"{err.path}: {err.reason}")
            bad.add(position)  # set.add is atomic under the GIL; threads may race harmlessly
    raise DatasetError(f"{max_retries + 1} consecutive samples from index {index} are unusable "
                       f"({'; '.join(reasons[-3:]) or 'all known bad'}); check the data")


def stack_batch(samples) -> dict:
    """Grain batch_fn: a list of sample dicts -> one dict of stacked arrays (NHWC)."""
    return {key: np.stack([sample[key] for sample in samples]) for key in samples[0]}


class SampleBuilder:
    """index (+ rng) -> {"image", "alpha", "trimap"[, "fg", "bg"]} of uint8 arrays.

    `source` yields {"fg", "alpha"} (composited) or {"image", "alpha"} (used as is, or
    re-composited when options.recomposite) or {"image"} (unlabelled). `backgrounds` is
    a source of RGB images, needed only when compositing.
    """

    def __init__(self, source, backgrounds, options: SampleOptions):
        self.source, self.backgrounds, self.options = source, backgrounds, options
        self._bad_samples: set = set()
        self._bad_backgrounds: set = set()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_bad_samples"], state["_bad_backgrounds"] = set(), set()
        return state

    def __call__(self, index, rng: np.random.Generator | None = None) -> dict:
        opts = self.options
        record = load_with_fallback(self.source, index, opts.max_retries, self._bad_samples)
        random = rng is not None and opts.augment
        if "alpha" not in record:
            return self._unlabelled(record["image"], rng if random else None)
        alpha = record["alpha"]
        colour = record["fg"] if "fg" in record else record["image"]
        size = opts.image_size
        height, width = alpha.shape
        window = (augment.random_window(height, width, rng, opts.scale_range, alpha,
                                        opts.subject_bias)
                  if random else augment.centre_window(height, width))
        packed = record.get(PACKED_KEY)
        flip = random and opts.flip and rng.random() < 0.5
        if packed is not None:
            # Cached record: colour + alpha as one [H, W, 4] array, resized (and flipped) in
            # one pass; the same pixels as the two separate calls below.
            both = augment.crop_resize(packed, window, size)
            colour, alpha = augment.split_colour_alpha(augment.hflip(both) if flip else both)
        else:
            alpha = augment.crop_resize(alpha, window, size)
            colour = augment.crop_resize(colour, window, size)
            if flip:
                alpha, colour = augment.hflip(alpha), augment.hflip(colour)
        composited = "fg" in record or opts.recomposite
        if composited and "fg" not in record:
            colour = estimate_foreground(colour, alpha)
        if random and opts.color_jitter:
            colour = augment.colour_jitter(colour, rng, opts.jitter)
        if composited:
            bg = self._background(index, rng if random else None)
            sample = {"image": composite(colour, bg, alpha), "fg": colour, "bg": bg}
        else:
            sample = {"image": colour}
        if random:
            radius = random_band_radius(rng, size, opts.trimap_kernel_range)
        else:
            radius = band_radius(size, sum(opts.trimap_kernel_range) / 2)
        trimap = make_trimap(alpha, radius, opts.trimap_fg_threshold, opts.trimap_bg_threshold)
        sample["alpha"], sample["trimap"] = alpha[:, :, None], trimap[:, :, None]
        if opts.image_only:
            return {"image": sample["image"]}
        return sample

    def _background(self, index: int, rng: np.random.Generator | None) -> np.ndarray:
        opts = self.options
        choice = int(rng.integers(len(self.backgrounds))) if rng is not None else index
        bg = load_with_fallback(self.backgrounds, choice % len(self.backgrounds),
                                opts.max_retries, self._bad_backgrounds)
        height, width = bg.shape[:2]
        if rng is None:
            return augment.crop_resize(bg, augment.centre_window(height, width), opts.image_size)
        window = augment.random_window(height, width, rng, opts.scale_range)
        bg = augment.crop_resize(bg, window, opts.image_size)
        return augment.hflip(bg) if opts.flip and rng.random() < 0.5 else bg

    def _unlabelled(self, image: np.ndarray, rng: np.random.Generator | None) -> dict:
        opts = self.options
        height, width = image.shape[:2]
        if rng is None:
            window = augment.centre_window(height, width)
        else:
            window = augment.random_window(height, width, rng, opts.scale_range)
        image = augment.crop_resize(image, window, opts.image_size)
        if rng is not None and opts.flip and rng.random() < 0.5:
            image = augment.hflip(image)
        return {"image": image}
