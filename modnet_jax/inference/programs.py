"""The engine's device programs (pure jax.numpy functions; ``engine.py`` compiles and runs them).

Everything between a decoded uint8 frame and the arrays an encoder needs:

- ``prepare``: uint8 [N, H, W, 3] -> the area resize to the model size -> ``(x/255 - 0.5)/0.5``;
- ``model_mattes``: the model (``inference=True``) on [B, rh, rw, 3] -> [B, rh, rw];
- ``restore``: the matte back to H x W (area or bilinear), clipped to [0, 1];
- ``one_frame_delay``: OFD over a window of consecutive mattes;
- ``outputs``: RGBA cut-outs and composites in uint8, as ``images.cutout`` / ``images.composite``;
- ``to_canvas`` / ``canvas_mattes`` / ``from_canvas``: the photo path on a shared canvas
  (``models.canvas``): the model input padded to the canvas, the model on a batch of canvases
  with each sample's valid size, and the valid corner cut out again;
- ``video_step`` / ``video_flush``: all of the above for a batch of video frames with the OFD
  state carried between batches (see ``video_step`` for the seams); ``video_raw`` and
  ``video_finish`` are its two halves (before and after OFD), run as separate programs when a
  batch is shared by several devices.

The entry points the engine compiles (``photo``, ``canvas_model``, ``photo_out``,
``video_raw_split``, ``video_program``) take their options as keywords (static arguments) and,
given a device ``mesh``, keep their results split by frame across its devices.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from modnet_jax.inference.resize import Taps, exact_divide, resize_hw
from modnet_jax.models.canvas import canvas_apply


def prepare(images, rows: Taps, cols: Taps):
    """Model input [N, rh, rw, 3] float32 in [-1, 1] from uint8 [N, H, W, 3].

    Both divisions are true divisions (``resize.exact_divide``), so the input is bit for bit the
    host's ``area_resize(x) / 127.5 - 1`` (but for a rare last-bit tie).
    """
    return exact_divide(resize_hw(images, rows, cols, exact=True), 127.5) - 1.0


def model_mattes(model, variables, x):
    """[B, rh, rw] float32 mattes of model inputs [B, rh, rw, 3]."""
    return model.apply(variables, x, train=False, inference=True)[2][..., 0].astype(jnp.float32)


def to_canvas(images, rows: Taps, cols: Taps, *, canvas: Tuple[int, int]):
    """``prepare`` placed in the top-left corner of a zero canvas [N, *canvas, 3]."""
    x = prepare(images, rows, cols)
    return jnp.pad(x, ((0, 0), (0, canvas[0] - x.shape[1]), (0, canvas[1] - x.shape[2]), (0, 0)))


def canvas_mattes(model, variables, x, sizes):
    """[B, H, W] mattes of canvases x [B, H, W, 3] whose samples have valid sizes [B, 2]
    (rows, cols; multiples of 32): each equals the model on its valid corner alone."""
    out = canvas_apply(model, variables, x, sizes, train=False, inference=True)[2]
    return out[..., 0].astype(jnp.float32)


def from_canvas(mattes, size: Tuple[int, int]):
    """The valid corner [N, *size] of canvas mattes [N, H, W]."""
    return mattes[:, :size[0], :size[1]]


def restore(mattes, rows: Taps, cols: Taps):
    """Mattes [N, rh, rw] resized to [N, H, W] by the taps, clipped to [0, 1]."""
    return jnp.clip(resize_hw(mattes, rows, cols), 0.0, 1.0)


def one_frame_delay(prev, cur, nxt, threshold: float):
    """``ofd.one_frame_delay`` on device: pixels of ``cur`` that flicker get the neighbours' mean."""
    flicker = ((jnp.abs(prev - nxt) <= threshold)
               & (jnp.abs(cur - prev) > threshold)
               & (jnp.abs(cur - nxt) > threshold))
    return jnp.where(flicker, 0.5 * (prev + nxt), cur)


def to_uint8(mattes):
    return jnp.clip(jnp.rint(mattes * 255.0), 0, 255).astype(jnp.uint8)


def outputs(images, mattes, background: Optional[jnp.ndarray], cutout: bool,
            with_image: bool = False, with_matte: bool = True) -> Dict[str, jnp.ndarray]:
    """{"matte": [N, H, W] float32, "cutout": RGBA uint8, "composite": RGB uint8, "image"}.

    ``background``: float32 [3] (a colour) or [H, W, 3] (an image already at the frame size);
    None: no composite. ``with_image`` returns the frames the mattes belong to;
    ``with_matte=False`` leaves the float mattes out (less to copy to the host).
    """
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


def video_raw(model, variables, frames, taps: Tuple[Taps, ...]):
    """Raw mattes [B, H, W] of video frames [B, H, W, 3] (resize, model, resize back)."""
    prep_rows, prep_cols, back_rows, back_cols = taps
    x = prepare(frames, prep_rows, prep_cols)
    return restore(model_mattes(model, variables, x), back_rows, back_cols)


def video_finish(raw, frames, carry_mattes, carry_frame, first, background, *, threshold: float,
                 ofd: bool, cutout: bool, with_image: bool, with_matte: bool = True):
    """``video_step`` after the model: OFD over the batch's raw mattes and the outputs."""
    if not ofd:
        return (outputs(frames, raw, background, cutout, with_image, with_matte),
                (carry_mattes, carry_frame))
    carry = jnp.where(first, jnp.concatenate([raw[:1], raw[:1]]), carry_mattes)
    ext = jnp.concatenate([carry, raw])
    fixed = one_frame_delay(ext[:-2], ext[1:-1], ext[2:], threshold)
    shown = jnp.concatenate([carry_frame, frames[:-1]])
    return (outputs(shown, fixed, background, cutout, with_image, with_matte),
            (ext[-2:], frames[-1:]))


def video_step(model, variables, frames, carry_mattes, carry_frame, first, taps: Tuple[Taps, ...],
               background, *, threshold: float, ofd: bool, cutout: bool, with_image: bool,
               with_matte: bool = True):
    """One batch of B video frames -> (outputs of B frames, new carry).

    With OFD the outputs lag one frame: they are the frame held back from the previous batch
    (``carry``: the raw mattes of its two last frames, and its image) followed by frames
    0..B-2 of this batch; frame B-1 is held back in the new carry. Frame t is corrected with
    the raw mattes of t-1 and t+1, across batch seams too. On the first batch (``first``) the
    carry is taken as two copies of frame 0, so output 0 is a dummy (the caller drops it) and
    frame 0, whose "previous" is itself, passes through unchanged, as the stream's first frame
    does in ``ofd.OneFrameDelay``. A batch padded with copies of the last frame ends the
    stream: the last real frame's "next" is then itself, so it passes through unchanged too.
    Without OFD the outputs are this batch's frames and the carry is returned untouched.
    """
    raw = video_raw(model, variables, frames, taps)
    return video_finish(raw, frames, carry_mattes, carry_frame, first, background,
                        threshold=threshold, ofd=ofd, cutout=cutout, with_image=with_image,
                        with_matte=with_matte)


def video_flush(carry_mattes, carry_frame, background, *, cutout: bool, with_image: bool,
                with_matte: bool = True):
    """Outputs of the frame held back at the end of a stream (its matte unchanged)."""
    return outputs(carry_frame, carry_mattes[1:], background, cutout, with_image, with_matte)


# ---------------------------------------------------------------- entry points the engine compiles

def _by_frame(tree, mesh):
    """``tree`` split along its first axis over ``mesh``'s devices (unchanged without a mesh)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec("frames")))


def photo(variables, images, taps, background, *, model, cutout, with_image):
    """Photos [B, H, W, 3] of one size end to end at their exact model input size."""
    x = prepare(images, taps[0], taps[1])
    mattes = restore(model_mattes(model, variables, x), taps[2], taps[3])
    return outputs(images, mattes, background, cutout, with_image)


def canvas_model(variables, x, sizes, *, model, mesh=None):
    """``canvas_mattes``; with a ``mesh``, each device mattes its share of the canvases."""
    return _by_frame(canvas_mattes(model, variables, x, sizes), mesh)


def photo_out(images, mattes, back_rows, back_cols, background, *, size, cutout, with_image):
    """Outputs of photos [B, H, W, 3] from their canvas mattes (valid corner ``size``)."""
    restored = restore(from_canvas(mattes, size), back_rows, back_cols)
    return outputs(images, restored, background, cutout, with_image)


def video_raw_split(variables, frames, taps, *, model, mesh):
    """``video_raw`` with the frames and raw mattes split over ``mesh``'s devices."""
    return _by_frame(video_raw(model, variables, frames, taps), mesh)


def video_program(variables, frames, carry_mattes, carry_frame, first, taps, background, *,
                  model, threshold, ofd, cutout, with_image, with_matte, mesh):
    """``video_step``; with a ``mesh``, the outputs split by frame like the input (each device
    finishes its own frames) and the carry replicated, as the next batch takes it."""
    out, carry = video_step(model, variables, frames, carry_mattes, carry_frame, first, taps,
                            background, threshold=threshold, ofd=ofd, cutout=cutout,
                            with_image=with_image, with_matte=with_matte)
    if mesh is not None:
        out = _by_frame(out, mesh)
        carry = jax.lax.with_sharding_constraint(carry, NamedSharding(mesh, PartitionSpec()))
    return out, carry
