"""The engine's device programs: plain ``jax.jit`` functions with static options.

Everything between a decoded uint8 frame and the arrays an encoder needs:

- ``prepare``: uint8 [N, H, W, 3] -> the area resize to the model size -> ``(x/255 - 0.5)/0.5``;
- ``restore``: the matte back to H x W (area or bilinear), clipped to [0, 1];
- ``one_frame_delay``: OFD over consecutive mattes; ``outputs``: cut-outs and composites;
- photos: ``to_canvas`` (prepare, zero-padded to the canvas), ``model_mattes`` (the model on a
  batch of canvases, each told its valid size: ``models.canvas``), ``photo_out`` (the valid
  corner back to the photo's size and its outputs);
- video: ``video_raw`` (prepare, model, restore) and ``video_finish`` (OFD with the state
  carried between batches, and the outputs; see ``video_finish`` for the seams),
  ``video_flush`` (the frame OFD held back at the end).

Resizes are separable gathers ("taps", built on the host once per size pair by ``make_taps``
and passed as arguments), so one program serves a size pair whatever the image content.
Given a device ``mesh``, ``model_mattes`` and ``video_raw`` keep their results split by frame
over its devices: each device mattes its share of the batch.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from modnet_jax.models.canvas import canvas_apply


class Taps(NamedTuple):
    """A 1-D resize n_in -> n_out: output i is ``sum_k weight[k, i] * x[idx[k, i]] /
    divisor[i]``; idx [K, n_out] int32, weight [K, n_out] and divisor [n_out] float32."""

    idx: np.ndarray
    weight: np.ndarray
    divisor: np.ndarray


def make_taps(n_in: int, n_out: int, mode: str = "area") -> Taps:
    """"area": PyTorch's adaptive average pooling (0/1 weights, the count as divisor, so sums
    of uint8 pixels are exact in float32 and only the final division rounds); "bilinear":
    OpenCV's ``INTER_LINEAR`` (half-pixel centres, edges clamped; positions computed as OpenCV
    does, in double rounded to float)."""
    if mode == "area":
        i = np.arange(n_out, dtype=np.int64)
        starts, ends = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        counts = ends - starts
        k = np.arange(int(counts.max()))[:, None]
        idx = np.minimum(starts[None, :] + k, n_in - 1)
        return Taps(idx.astype(np.int32), (k < counts[None, :]).astype(np.float32),
                    counts.astype(np.float32))
    if mode != "bilinear":
        raise ValueError(f"resize mode must be 'area' or 'bilinear', got {mode!r}")
    src = ((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5).astype(np.float32)
    left = np.floor(src).astype(np.int64)
    frac = (src - left.astype(np.float32)).astype(np.float32)
    low, high = left < 0, left >= n_in - 1
    frac[low], left[low] = 0.0, 0
    frac[high], left[high] = 0.0, n_in - 1
    idx = np.stack([left, np.minimum(left + 1, n_in - 1)]).astype(np.int32)
    weight = np.stack([np.float32(1.0) - frac, frac]).astype(np.float32)
    return Taps(idx, weight, np.ones(n_out, np.float32))


def _apply_axis(x, idx, weight, axis: int):
    shape = [1] * x.ndim
    shape[axis] = weight.shape[1]
    out = None
    for k in range(idx.shape[0]):
        term = jnp.take(x, idx[k], axis=axis).astype(jnp.float32) * weight[k].reshape(shape)
        out = term if out is None else out + term
    return out


def exact_divide(x, y):
    """x / y correctly rounded, as numpy computes it. XLA rewrites a division by a broadcast
    value into a multiplication by its reciprocal, and (a / b) / c into a / (b * c), which
    round differently; a barrier around both operands keeps one true division."""
    x, y = jax.lax.optimization_barrier((x, jnp.broadcast_to(jnp.asarray(y, x.dtype), x.shape)))
    return x / y


def resize_hw(x, rows: Taps, cols: Taps, exact: bool = False):
    """Resize [N, H, W] or [N, H, W, C] over axes 1 and 2 (float32): both axes summed first,
    divided once at the end (correctly rounded with ``exact``)."""
    out = _apply_axis(_apply_axis(x, rows.idx, rows.weight, 1), cols.idx, cols.weight, 2)
    div = rows.divisor[:, None] * cols.divisor[None, :]
    div = div[None, ..., None] if x.ndim == 4 else div[None]
    return exact_divide(out, div) if exact else out / div


def prepare(images, rows: Taps, cols: Taps):
    """Model input [N, rh, rw, 3] in [-1, 1] from uint8 [N, H, W, 3]: bit for bit the host's
    ``area_resize(x) / 127.5 - 1`` (but for a rare last-bit tie)."""
    return exact_divide(resize_hw(images, rows, cols, exact=True), 127.5) - 1.0


def restore(mattes, rows: Taps, cols: Taps):
    """Mattes [N, rh, rw] resized to [N, H, W] by the taps, clipped to [0, 1]."""
    return jnp.clip(resize_hw(mattes, rows, cols), 0.0, 1.0)


def one_frame_delay(prev, cur, nxt, threshold: float):
    """``temporal.one_frame_delay`` on the device: flickering pixels get the neighbours' mean."""
    flicker = ((jnp.abs(prev - nxt) <= threshold) & (jnp.abs(cur - prev) > threshold)
               & (jnp.abs(cur - nxt) > threshold))
    return jnp.where(flicker, 0.5 * (prev + nxt), cur)


def to_uint8(mattes):
    return jnp.clip(jnp.rint(mattes * 255.0), 0, 255).astype(jnp.uint8)


def outputs(images, mattes, background, cutout: bool, with_image: bool, with_matte: bool):
    """{"matte": float32 [N, H, W], "cutout": RGBA uint8, "composite": RGB uint8, "image"}.

    ``background``: float32 [3] (a colour) or [H, W, 3] (an image at the frame size); None: no
    composite."""
    out = {"matte": mattes} if with_matte else {}
    if with_image:
        out["image"] = images
    if cutout:
        out["cutout"] = jnp.concatenate([images[..., :3], to_uint8(mattes)[..., None]], axis=-1)
    if background is not None:
        a = mattes[..., None]
        comp = images.astype(jnp.float32) * a + background * (1.0 - a)
        out["composite"] = jnp.clip(jnp.rint(comp), 0, 255).astype(jnp.uint8)
    return out


def _by_frame(tree, mesh):
    """``tree`` split along its first axis over ``mesh``'s devices (unchanged without one)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec("frames")))


def _model(model, variables, x, sizes=None):
    """[B, rh, rw] float32 mattes; with ``sizes``, of canvases (``models.canvas``)."""
    if sizes is None:
        out = model.apply(variables, x, train=False, inference=True)
    else:
        out = canvas_apply(model, variables, x, sizes, train=False, inference=True)
    return out[2][..., 0].astype(jnp.float32)


# ---------------------------------------------------------------- photos


@partial(jax.jit, static_argnames=("canvas",))
def to_canvas(images, rows: Taps, cols: Taps, *, canvas):
    """``prepare`` in the top-left corner of a zero canvas [N, *canvas, 3]."""
    x = prepare(images, rows, cols)
    return jnp.pad(x, ((0, 0), (0, canvas[0] - x.shape[1]), (0, canvas[1] - x.shape[2]), (0, 0)))


@partial(jax.jit, static_argnames=("model", "masked", "mesh"))
def model_mattes(variables, x, sizes, *, model, masked: bool, mesh=None):
    """Mattes [B, H, W] of canvases [B, H, W, 3] with valid sizes [B, 2]; ``masked=False``:
    the canvases are the photos' own size (the plain model, ``sizes`` unused)."""
    return _by_frame(_model(model, variables, x, sizes if masked else None), mesh)


@partial(jax.jit, static_argnames=("size", "cutout", "with_image"))
def photo_out(images, mattes, rows: Taps, cols: Taps, background, *, size, cutout, with_image):
    """Outputs of photos [B, H, W, 3] from their canvas mattes (valid corner ``size``)."""
    restored = restore(mattes[:, :size[0], :size[1]], rows, cols)
    return outputs(images, restored, background, cutout, with_image, True)


# ---------------------------------------------------------------- video


@partial(jax.jit, static_argnames=("model", "mesh"))
def video_raw(variables, frames, taps, *, model, mesh=None):
    """Raw mattes [B, H, W] of frames [B, H, W, 3] (resize, model, resize back)."""
    x = prepare(frames, taps[0], taps[1])
    return _by_frame(restore(_model(model, variables, x), taps[2], taps[3]), mesh)


@partial(jax.jit, static_argnames=("threshold", "ofd", "cutout", "with_image", "with_matte"))
def video_finish(raw, frames, carry_mattes, carry_frame, first, background, *, threshold,
                 ofd, cutout, with_image, with_matte):
    """(outputs of a batch of B frames, new carry) from their raw mattes.

    With OFD the outputs lag one frame: the frame held back from the previous batch (the carry:
    the raw mattes of its last two frames, and its image) then frames 0..B-2; frame B-1 is held
    in the new carry. Frame t is corrected with the raw mattes of t-1 and t+1, across batch
    seams too. On the ``first`` batch the carry is two copies of frame 0, so output 0 is a
    dummy (the caller drops it) and frame 0, whose "previous" is itself, passes unchanged, as
    the first frame of ``temporal.OneFrameDelay``. A batch padded with copies of the last
    frame ends the stream: that frame's "next" is itself, so it passes unchanged too.
    """
    if not ofd:
        return (outputs(frames, raw, background, cutout, with_image, with_matte),
                (carry_mattes, carry_frame))
    carry = jnp.where(first, jnp.concatenate([raw[:1], raw[:1]]), carry_mattes)
    ext = jnp.concatenate([carry, raw])
    fixed = one_frame_delay(ext[:-2], ext[1:-1], ext[2:], threshold)
    shown = jnp.concatenate([carry_frame, frames[:-1]])
    return (outputs(shown, fixed, background, cutout, with_image, with_matte),
            (ext[-2:], frames[-1:]))


@partial(jax.jit, static_argnames=("cutout", "with_image", "with_matte"))
def video_flush(carry_mattes, carry_frame, background, *, cutout, with_image, with_matte):
    """Outputs of the frame held back at the end of a stream (its matte unchanged)."""
    return outputs(carry_frame, carry_mattes[1:], background, cutout, with_image, with_matte)
