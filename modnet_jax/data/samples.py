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

import cv2
import numpy as np

from modnet_jax.data import augment, recipe
from modnet_jax.data.augment import JitterRanges
from modnet_jax.data.cache import PACKED_KEY
from modnet_jax.data.report import DatasetError, UnusableFile, report_skip
from modnet_jax.imaging.compositing import composite, estimate_foreground
from modnet_jax.imaging.trimap import make_trimap


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
    device: bool = False         # hand crops + draws to the device stage (_for_device)
    precrop_size: int = 0        # the device path's canvas side (recipe.precrop_size)


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


CROP_KEYS = ("crop", "bg_crop")  # the device path's crops (of varying side)


def stack_batch(samples, canvas: int = 0) -> dict:
    """Grain batch_fn: a list of sample dicts -> one dict of stacked arrays (NHWC).
    `canvas` > 0 (the device path): the crops under CROP_KEYS are placed in canvases of
    that side (recipe.canvases)."""
    return {key: recipe.canvases([sample[key] for sample in samples], canvas)
            if canvas and key in CROP_KEYS else np.stack([sample[key] for sample in samples])
            for key in samples[0]}


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
        if rng is not None and not opts.augment:
            rng = None
        alpha = record.get("alpha")
        colour = record["fg"] if "fg" in record else record["image"]
        composited = alpha is not None and ("fg" in record or opts.recomposite)
        loaded = {}

        def background_shape(choice: int) -> tuple:
            loaded["bg"] = load_with_fallback(self.backgrounds, choice % len(self.backgrounds),
                                              opts.max_retries, self._bad_backgrounds)
            return loaded["bg"].shape[:2]

        draws = recipe.draw_sample(opts, rng, index, alpha, colour.shape[:2],
                                   len(self.backgrounds) if composited else 0,
                                   background_shape if composited else None)
        if opts.device:
            return self._for_device(record, loaded.get("bg"), draws)
        if alpha is None:
            image = augment.crop_resize(colour, draws.window, opts.image_size)
            return {"image": augment.hflip(image) if draws.flip else image}
        size = opts.image_size
        packed = record.get(PACKED_KEY)
        if packed is not None:
            # Cached record: colour + alpha as one [H, W, 4] array, resized (and flipped) in
            # one pass; the same pixels as the two separate calls below.
            both = augment.crop_resize(packed, draws.window, size)
            colour, alpha = augment.split_colour_alpha(augment.hflip(both) if draws.flip else both)
        else:
            alpha = augment.crop_resize(alpha, draws.window, size)
            colour = augment.crop_resize(colour, draws.window, size)
            if draws.flip:
                alpha, colour = augment.hflip(alpha), augment.hflip(colour)
        if composited and "fg" not in record:
            colour = estimate_foreground(colour, alpha)
        if draws.jitter is not None:
            colour = augment.apply_jitter(colour, draws.jitter)
        if composited:
            bg = augment.crop_resize(loaded["bg"], draws.bg_window, size)
            bg = augment.hflip(bg) if draws.bg_flip else bg
            sample = {"image": composite(colour, bg, alpha), "fg": colour, "bg": bg}
        else:
            sample = {"image": colour}
        trimap = make_trimap(alpha, draws.radius, opts.trimap_fg_threshold,
                             opts.trimap_bg_threshold)
        sample["alpha"], sample["trimap"] = alpha[:, :, None], trimap[:, :, None]
        if opts.image_only:
            return {"image": sample["image"]}
        return sample

    def _for_device(self, record: dict, bg, draws: recipe.Draws) -> dict:
        """The device path's sample: uint8 crops (recipe.precrop; batched into fixed-size
        canvases by stack_batch) and the draws (recipe.device_params);
        modnet_jax.device_augment makes the pixels."""
        size = self.options.precrop_size
        image_size = self.options.image_size
        colour = record.get(PACKED_KEY)
        if colour is not None:
            crop, side = recipe.precrop(colour, draws.window, size, image_size)
        else:  # colour and matte apart: crop each, merge the crops only
            colour = record["fg"] if "fg" in record else record["image"]
            crop, side = recipe.precrop(colour, draws.window, size, image_size)
            if "alpha" in record:
                alpha, _ = recipe.precrop(record["alpha"], draws.window, size, image_size)
                crop = cv2.merge([np.ascontiguousarray(crop), np.ascontiguousarray(alpha)])
        sample = {"crop": crop}
        bg_side = 0
        if bg is not None:
            sample["bg_crop"], bg_side = recipe.precrop(bg, draws.bg_window, size, image_size)
        sample["draws"] = recipe.device_params(draws, side, bg_side)
        return sample
