"""The device stage of the augmentation recipe: crops + draws in, training samples out, in jax.

The host path (`data.samples.SampleBuilder` without `device`) makes each sample with
OpenCV; with `data.augment_on_device` the host only crops (`recipe.precrop`) and the train step calls
`augment_batch` first. Same draws (`recipe.device_params`), same steps, same rounding:

* resize the crop (its side is a draw; it sits in the top-left corner of a fixed canvas) to
  the training size: OpenCV's INTER_AREA when shrinking (each output pixel averages the
  input area it covers, a few taps per axis; OpenCV sums in another order, so a pixel a
  hair from a rounding boundary can differ by one level), and its fixed-point INTER_LINEAR
  when enlarging, integer for integer;
* horizontal flips (folded into the resize: its column taps in reverse order);
* colour jitter through 8-bit HSV exactly as OpenCV's RGB2HSV (integer tables), the
  per-level rounded saturation/value tables and the hue shift modulo 180, then HSV2RGB in
  float32 as OpenCV does;
* compositing with the exact integer rounding of `imaging.compositing.composite`;
* the trimap of `imaging.trimap.make_trimap`: thresholds on the integer scale, then erosion
  and dilation by a (2r + 1) square with the per-sample r, built from static max-filters of
  radius 1, 2, 4, ... (a square of radius a then one of radius b is one of radius a + b),
  so the unknown band is exactly the host's.

Outputs hold the host batches' uint8 values as float32 ({"image", "alpha", "trimap", "fg",
"bg"}), so `steps.device_batch` normalises both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from modnet_jax.data.recipe import PARAMS, max_radius

_P = {name: i for i, name in enumerate(PARAMS)}


@dataclass(frozen=True)
class DeviceRecipe:
    """The static part of the device stage (what the compiled step is specialised on)."""

    image_size: int
    max_radius: int                 # widest trimap band the draws can ask for
    fg_level: int = 230             # fg = alpha >= this (uint8 scale)
    bg_level: int = 0               # not_bg = alpha > this

    @classmethod
    def from_options(cls, opts) -> "DeviceRecipe":
        """From a samples.SampleOptions (the thresholds as trimap._threshold turns them
        into integer levels)."""
        return cls(int(opts.image_size), max_radius(opts),
                   int(np.ceil(opts.trimap_fg_threshold * 255 - 1e-6)),
                   int(np.floor(opts.trimap_bg_threshold * 255 + 1e-6)))


def _area_taps(side, canvas: int, out: int):
    """OpenCV's INTER_AREA taps for shrinking the first `side` (>= out) rows to `out`: output
    row i averages the input rows its span [i s, (i + 1) s) covers (s = side / out), each
    weighted by the length it covers / s. Returns [taps] lists of (row index, weight) arrays
    of [out]; a span covers at most ceil(canvas / out) + 1 rows."""
    side = jnp.asarray(side, jnp.float32)
    i = jnp.arange(out, dtype=jnp.float32)
    scale = side / out
    lo, hi = i * scale, (i + 1) * scale
    first = jnp.floor(lo)
    taps = []
    for k in range(-(-canvas // out) + 1):
        j = first + k
        weight = jnp.clip(jnp.minimum(j + 1, hi) - jnp.maximum(j, lo), 0.0, None) / scale
        taps.append((jnp.clip(j, 0, canvas - 1).astype(jnp.int32), weight))
    return taps


def _flipped(flip, *columns):
    """Per-output-column arrays in reverse order when `flip`: the resize then writes the
    mirrored image directly (a separate reversal of its output costs XLA far more)."""
    return [jnp.where(flip, c[::-1], c) for c in columns]


def _area_resize(canvas, side, out: int, flip):
    x = canvas.astype(jnp.float32)
    taps = _area_taps(side, canvas.shape[0], out)
    rows = sum(x[j] * w[:, None, None] for j, w in taps)                  # [out, canvas, K]
    x = sum(rows[:, j] * w[None, :, None] for j, w in (_flipped(flip, j, w) for j, w in taps))
    return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)  # halves up, as OpenCV's integer shrinks


def _linear_taps(side, out: int, clamp_weights: bool):
    """OpenCV's INTER_LINEAR taps for uint8 (half-pixel centres): for each output position
    the two source indices (clamped to the image) and their weights in 1/2048ths, rounded.
    Past the edges OpenCV puts all the weight on the edge pixel for columns
    (`clamp_weights`) but keeps the fractional weights for rows (both taps then read the
    edge row)."""
    side = jnp.asarray(side, jnp.int32)
    i = jnp.arange(out, dtype=jnp.int32)
    numerator = (2 * i + 1) * side - out          # source position x 2 out
    start = jnp.floor_divide(numerator, 2 * out)
    frac = (numerator - start * 2 * out).astype(jnp.float32) / (2 * out)
    if clamp_weights:
        frac = jnp.where((start < 0) | (start >= side - 1), 0.0, frac)
    w0 = jnp.rint((1.0 - frac) * 2048).astype(jnp.int32)
    w1 = jnp.rint(frac * 2048).astype(jnp.int32)
    return jnp.clip(start, 0, side - 1), jnp.clip(start + 1, 0, side - 1), w0, w1


def _linear_resize(canvas, side, out: int, flip):
    """OpenCV's uint8 INTER_LINEAR (enlarging), integer for integer: rows of horizontal
    taps (x 2048), then the vertical taps as its vectorised path does them:
    (((r0 >> 4) w0 >> 16) + ((r1 >> 4) w1 >> 16) + 2) >> 2."""
    x = canvas.astype(jnp.int32)
    c0, c1, u0, u1 = _flipped(flip, *_linear_taps(side, out, True))
    rows = x[:, c0] * u0[None, :, None] + x[:, c1] * u1[None, :, None]   # [canvas, out, K]
    r0_, r1_, v0, v1 = _linear_taps(side, out, False)
    r0, r1 = rows[r0_] >> 4, rows[r1_] >> 4                               # [out, out, K]
    total = ((r0 * v0[:, None, None]) >> 16) + ((r1 * v1[:, None, None]) >> 16)
    return jnp.clip((total + 2) >> 2, 0, 255).astype(jnp.float32)


def resize_crop(canvas, side, out: int, flip=False):
    """uint8 [C, C, K] canvas whose top-left side x side holds a crop -> float32
    [out, out, K] integer-valued, as augment.crop_resize makes it (then mirrored left-right
    when `flip`): area averaging when shrinking, OpenCV's fixed-point linear filter when
    enlarging (a few gathered taps per output pixel and axis, not dense matrix products)."""
    flip = jnp.asarray(flip) > 0.5
    return jnp.where(jnp.asarray(side) >= out, _area_resize(canvas, side, out, flip),
                     _linear_resize(canvas, side, out, flip))


def _table(n: int, numerator: float) -> np.ndarray:
    """OpenCV's division tables: round(numerator / i) (round half to even), 0 at 0."""
    i = np.arange(n, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(i > 0, np.rint(numerator / np.maximum(i, 1)), 0).astype(np.int32)


_SHIFT = 12
_SDIV = _table(256, 255 << _SHIFT)
_HDIV = _table(256, (180 << _SHIFT) / 6.0)


def rgb_to_hsv8(rgb):
    """int32 [..., 3] RGB 0..255 -> int32 (h 0..179, s, v 0..255), as cv2.COLOR_RGB2HSV."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.maximum(jnp.maximum(r, g), b)
    diff = v - jnp.minimum(jnp.minimum(r, g), b)
    half = 1 << (_SHIFT - 1)
    s = (diff * jnp.asarray(_SDIV)[v] + half) >> _SHIFT
    h = jnp.where(v == r, g - b, jnp.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * jnp.asarray(_HDIV)[diff] + half) >> _SHIFT
    return jnp.where(h < 0, h + 180, h), s, v


def hsv8_to_rgb(h, s, v):
    """int32 h 0..179, s, v 0..255 -> float32 [..., 3] RGB 0..255 integers, as
    cv2.COLOR_HSV2RGB's vectorised path computes them: float32 arithmetic, hue sectors of
    30 steps, the result x 255 truncated (OpenCV's scalar path, used for the few pixels past
    the last full SIMD block of an image, rounds instead: those can differ by one level)."""
    hf = h.astype(jnp.float32) * jnp.float32(6.0 / 180.0)
    sf = s.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
    vf = v.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
    hf = jnp.mod(hf, 6.0)
    sector = jnp.floor(hf)
    frac = hf - sector
    sector = sector.astype(jnp.int32)
    p = vf * (1.0 - sf)
    q = vf * (1.0 - sf * frac)
    t = vf * (1.0 - sf * (1.0 - frac))
    # sectors 0..5: (r, g, b) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    choose = lambda *options: jnp.select([sector == k for k in range(5)], options[:5], options[5])
    r = choose(vf, q, p, p, t, vf)
    g = choose(t, vf, vf, q, p, p)
    b = choose(p, p, t, vf, vf, q)
    rgb = jnp.stack([r, g, b], axis=-1)
    grey = (s == 0)[..., None]
    rgb = jnp.where(grey, vf[..., None], rgb)
    return jnp.clip(jnp.trunc(rgb * 255.0), 0.0, 255.0)


def colour_jitter(rgb, hue_steps, saturation, value):
    """float32 integer-valued RGB [H, W, 3] -> the host's augment.apply_jitter result."""
    h, s, v = rgb_to_hsv8(rgb.astype(jnp.int32))
    h = jnp.mod(h + hue_steps.astype(jnp.int32), 180)
    s = jnp.clip(jnp.rint(s.astype(jnp.float32) * saturation), 0, 255).astype(jnp.int32)
    v = jnp.clip(jnp.rint(v.astype(jnp.float32) * value), 0, 255).astype(jnp.int32)
    return hsv8_to_rgb(h, s, v)


def composite(fg, bg, alpha):
    """round(fg a + bg (1 - a)), a = alpha / 255, exactly (255 is odd: no ties), as floats."""
    a = alpha.astype(jnp.int32)
    total = fg.astype(jnp.int32) * a + bg.astype(jnp.int32) * (255 - a)
    return ((total + 127) // 255).astype(jnp.float32)


def _max_filter(mask, radius: int):
    """Max over a (2 radius + 1) square, zeros outside (separable)."""
    window = 2 * radius + 1
    out = jax.lax.reduce_window(mask, 0, jax.lax.max, (window, 1), (1, 1),
                                ((radius, radius), (0, 0)))
    return jax.lax.reduce_window(out, 0, jax.lax.max, (1, window), (1, 1),
                                 ((0, 0), (radius, radius)))


def dilate(mask, radius, max_radius: int):
    """int32 0/1 [H, W] dilated by a (2 radius + 1) square (zeros outside), radius a traced
    integer in [0, max_radius]: max-filters of radius 2^k for each set bit of radius."""
    step = 1
    while step <= max_radius:
        mask = jnp.where((radius & step) != 0, _max_filter(mask, step), mask)
        step *= 2
    return mask


def trimap(alpha, radius, recipe: DeviceRecipe):
    """float32 [H, W] {0, 128, 255}: make_trimap(alpha, radius) on the device."""
    a = alpha.astype(jnp.int32)
    fg = (a >= recipe.fg_level).astype(jnp.int32)
    not_bg = (a > recipe.bg_level).astype(jnp.int32)
    radius = radius.astype(jnp.int32)
    # erosion with ones outside == the complement's dilation with zeros outside
    fg = 1 - dilate(1 - fg, radius, recipe.max_radius)
    not_bg = dilate(not_bg, radius, recipe.max_radius)
    return jnp.where(fg > 0, 255.0, jnp.where(not_bg > 0, 128.0, 0.0))


def augment_sample(sample: dict, recipe: DeviceRecipe) -> dict:
    """One sample's crops + draws -> {"image", ...} float32 integer-valued (see the module
    docstring); labelled crops carry alpha as their 4th channel."""
    draws, size = sample["draws"], recipe.image_size
    p = {name: draws[i] for name, i in _P.items()}
    canvas = sample["crop"]
    # colour and matte resized apart: consumers of channel slices of one resize output make
    # XLA (CPU) recompute the resize per slice
    colour = resize_crop(canvas[..., :3], p["side"], size, p["flip"])
    if canvas.shape[-1] == 3:  # unlabelled: crop and flip only
        return {"image": colour}
    alpha = resize_crop(canvas[..., 3:], p["side"], size, p["flip"])[..., 0]
    jittered = colour_jitter(colour, p["hue_steps"], p["saturation"], p["value"])
    colour = jnp.where(p["jitter"] > 0.5, jittered, colour)
    out = {"alpha": alpha[..., None],
           "trimap": trimap(alpha, jnp.rint(p["radius"]), recipe)[..., None]}
    if "bg_crop" in sample:
        bg = resize_crop(sample["bg_crop"], p["bg_side"], size, p["bg_flip"])
        out.update(image=composite(colour, bg, alpha[..., None]), fg=colour, bg=bg)
    else:
        out["image"] = colour
    return out


def augment_batch(batch: dict, recipe: DeviceRecipe) -> dict:
    """A host batch of crops + draws ({"crop", "draws"[, "bg_crop"]}) -> the batch the host
    path would have made ({"image", "alpha", "trimap"[, "fg", "bg"]}, float32 0..255)."""
    keys = [k for k in DEVICE_KEYS if k in batch]
    return jax.vmap(lambda s: augment_sample(s, recipe))({k: batch[k] for k in keys})


DEVICE_KEYS = ("crop", "bg_crop", "draws")  # what crosses to the device on this path


def is_device_batch(batch: dict) -> bool:
    return "crop" in batch and "draws" in batch
