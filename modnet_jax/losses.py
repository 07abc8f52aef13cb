"""MODNet objectives as pure functions of arrays (no model, no state).

Shapes (NHWC, float32; lower-precision inputs are widened to float32 first, so the losses
reduce in float32 under bf16 compute):
  image:  [B, H, W, 3] normalised to [-1, 1] (the model input)
  trimap: [B, H, W, 1] with values exactly {0, 0.5, 1}
  alpha:  [B, H, W, 1] in [0, 1] (ground-truth matte)
  pred_semantic [B, H/16, W/16, 1], pred_detail / pred_matte [B, H, W, 1], all in [0, 1]

Each loss returns a dict of named terms plus ``"total"``:

* ``supervised_loss(..., variant="release")``: the released trainer (docs/losses.md):
  semantic MSE x10 against a blurred 1/16 matte, detail L1 x10, matte L1 + 4x boundary L1 +
  the image-weighted terms.
* ``variant="paper"``: the paper's Eq. 2-5: 1/2 MSE semantic, detail L1 only inside the
  trimap's transition band (lambda_d = 10), matte L1 + the true compositional loss when
  ground-truth ``fg``/``bg`` are given.
* ``soc_loss``: self-supervised sub-objective consistency (section 4), with the release's
  empty-boundary NaN fixed (samples without a band drop out of the detail mean).
"""

from __future__ import annotations

from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from modnet_jax.models.ops import downsample_bilinear, resize_bilinear

# The release's blurer: a sigma-0.8 Gaussian filter of a 3x3 delta (scipy, tails reflected back
# in), separable; docs/losses.md.
GAUSSIAN_1D = np.array([0.25022103, 0.49955794, 0.25022103], np.float32)
GAUSSIAN_3X3 = np.outer(GAUSSIAN_1D, GAUSSIAN_1D)

LOSS_VARIANTS = ("release", "paper")


def gaussian_blur(x):
    """Reflect-pad by 1, then the 3x3 Gaussian per channel. x: [B, H, W, C] (H, W >= 2)."""
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    h, w = x.shape[1], x.shape[2]
    out = 0.0
    for i in range(3):
        for j in range(3):
            out = out + float(GAUSSIAN_3X3[i, j]) * xp[:, i:i + h, j:j + w, :]
    return out


def semantic_target(alpha):
    """G(bilinear(alpha, 1/16)): the coarse semantic target. [B,H,W,1] -> [B,H/16,W/16,1]."""
    return gaussian_blur(downsample_bilinear(alpha, 16))


def at_least_fp32(*arrays):
    """The arrays in float32 or wider (bf16/fp16 predictions are widened, float64 stays): every
    loss reduces in at least float32, whatever the model's compute dtype."""
    return tuple(None if x is None else jnp.asarray(x).astype(
        jnp.promote_types(jnp.asarray(x).dtype, jnp.float32)) for x in arrays)


def _l1(a, b):
    return jnp.mean(jnp.abs(a - b))


def supervised_loss(pred_semantic, pred_detail, pred_matte, image, trimap, alpha,
                    variant: str = "release", fg=None, bg=None) -> Dict[str, jax.Array]:
    """Supervised MODNet loss; returns {"semantic", "detail", "matte", "total"} (scalars).

    ``fg``/``bg`` ([B, H, W, 3] in [0, 1]) are used by the paper variant only, for the true
    compositional term; without them that variant uses the alpha L1 alone.
    """
    if variant not in LOSS_VARIANTS:
        raise ValueError(f"loss variant must be one of {LOSS_VARIANTS}, got {variant!r}")
    pred_semantic, pred_detail, pred_matte, image, trimap, alpha, fg, bg = at_least_fp32(
        pred_semantic, pred_detail, pred_matte, image, trimap, alpha, fg, bg)
    gt_semantic = semantic_target(alpha)
    known = (trimap < 0.5) | (trimap > 0.5)

    if variant == "release":
        semantic = 10.0 * jnp.mean(jnp.square(pred_semantic - gt_semantic))
        pd = jnp.where(known, trimap, pred_detail)
        gd = jnp.where(known, trimap, alpha)
        detail = 10.0 * _l1(pd, gd)
        pm = jnp.where(known, trimap, pred_matte)
        matte = (_l1(pred_matte, alpha) + 4.0 * _l1(pm, alpha)
                 + _l1(image * pred_matte, image * alpha) + 4.0 * _l1(image * pm, image * alpha))
    else:
        semantic = 0.5 * jnp.mean(jnp.square(pred_semantic - gt_semantic))
        band = (~known).astype(jnp.float32)
        detail = 10.0 * jnp.sum(band * jnp.abs(pred_detail - alpha)) / jnp.maximum(
            jnp.sum(band), 1.0)
        matte = _l1(pred_matte, alpha)
        if fg is not None and bg is not None:
            composite_pred = fg * pred_matte + bg * (1.0 - pred_matte)
            composite_gt = fg * alpha + bg * (1.0 - alpha)
            matte = matte + _l1(composite_pred, composite_gt)
    return {"semantic": semantic, "detail": detail, "matte": matte,
            "total": semantic + detail + matte}


# ------------------------------------------------------------------------------------- SOC


def _window(size: int, mirrored: bool):
    """(low, high) offsets of scipy.ndimage's size-``size`` window (erosion; dilation mirrors)."""
    lo, hi = -(size // 2), size - 1 - size // 2
    return (-hi, -lo) if mirrored else (lo, hi)


def _pool(x, size: int, mirrored: bool, op):
    lo, hi = _window(size, mirrored)
    init = -jnp.inf if op is jax.lax.max else jnp.inf
    pad = ((0, 0), (-lo, hi), (-lo, hi), (0, 0))
    return jax.lax.reduce_window(x, init, op, (1, size, size, 1), (1, 1, 1, 1), pad)


def grey_dilation(x, size: int):
    """scipy.ndimage.grey_dilation(x, size=(size, size)) per sample/channel. x: [B,H,W,C].

    The border mode does not matter: with scipy's 'reflect' mode the reflected pixels always
    lie inside the clipped window, so a max over the valid pixels is the same thing.
    """
    return _pool(x, size, True, jax.lax.max)


def grey_erosion(x, size: int):
    """scipy.ndimage.grey_erosion(x, size=(size, size)) per sample/channel. x: [B,H,W,C]."""
    return _pool(x, size, False, jax.lax.min)


def soc_band_width(height: int, width: int) -> int:
    """The release's dilation/erosion size: int((H + W) / 2 * 0.05), 25 at 512x512."""
    return max(int((height + width) / 2 * 0.05), 1)


def soc_boundary_band(pred_semantic, pred_matte):
    """Where the matte's foreground changes within a window: [B, H, W, 1] float in {0, 1}.

    fg = (matte > 0.1) * up16(semantic > 0.1) (no gradient); band = dilate(fg) != erode(fg).
    Computed on device (max-pool minus min-pool), never on the host.
    """
    pred_semantic = jax.lax.stop_gradient(pred_semantic)
    pred_matte = jax.lax.stop_gradient(pred_matte)
    b, h, w, _ = pred_matte.shape
    sem_up = resize_bilinear((pred_semantic > 0.1).astype(jnp.float32), h, w)
    fg = (pred_matte > 0.1).astype(jnp.float32) * sem_up
    side = soc_band_width(h, w)
    return ((grey_dilation(fg, side) - grey_erosion(fg, side)) != 0).astype(jnp.float32)


def soc_loss(pred_semantic, pred_detail, pred_matte, frozen_detail, frozen_matte,
             axis_name: Optional[str] = None) -> Dict[str, jax.Array]:
    """SOC consistency between M's sub-objectives and against the frozen copy M'.

    ``frozen_*`` come from M' (treated as constants). Returns {"semantic", "detail",
    "band_fraction", "total"}. Under ``pmap`` pass ``axis_name``: the detail term is a mean over
    the samples of the *global* batch that have a boundary band, and this device's value is
    scaled so that ``pmean`` over devices gives exactly the global loss (and gradients).
    """
    pred_semantic, pred_detail, pred_matte, frozen_detail, frozen_matte = at_least_fp32(
        pred_semantic, pred_detail, pred_matte, frozen_detail, frozen_matte)
    # Semantic consistency, both ways, each side against the other's detached prediction.
    matte_down = semantic_target(pred_matte)
    pseudo_semantic = jax.lax.stop_gradient(matte_down)
    pseudo_semantic = pseudo_semantic * (pseudo_semantic > 0.01)
    pseudo_matte = jax.lax.stop_gradient(pred_semantic)
    pseudo_matte = pseudo_matte * (pseudo_matte > 0.01)
    semantic = 100.0 * (jnp.mean(jnp.square(pred_semantic - pseudo_semantic))
                        + jnp.mean(jnp.square(matte_down - pseudo_matte)))

    # Detail consistency against M' on the boundary band, per sample.
    band = soc_boundary_band(pred_semantic, pred_matte)
    frozen_detail = jax.lax.stop_gradient(frozen_detail)
    frozen_matte = jax.lax.stop_gradient(frozen_matte)
    band_px = jnp.sum(band, axis=(1, 2, 3))
    valid = band_px > 0
    safe = jnp.maximum(band_px, 1.0)  # The release divides by zero here and returns NaN.
    per_sample = (jnp.sum(band * jnp.abs(pred_detail - frozen_detail), axis=(1, 2, 3))
                  + jnp.sum(band * jnp.abs(pred_matte - frozen_matte), axis=(1, 2, 3))) / safe
    local_sum = jnp.sum(jnp.where(valid, per_sample, 0.0))
    count = jnp.sum(valid.astype(jnp.float32))
    n_dev = 1.0
    if axis_name is not None:
        count = jax.lax.psum(count, axis_name)
        n_dev = jax.lax.psum(1.0, axis_name)
    detail = n_dev * local_sum / jnp.maximum(count, 1.0)
    return {"semantic": semantic, "detail": detail,
            "band_fraction": jnp.mean(band), "total": semantic + detail}


def temporal_consistency(pred_matte, image, still_tol: float = 4.0) -> jax.Array:
    """Neighbouring-frame consistency: mean |a_t - a_(t-1)| over the still pixels of each
    consecutive pair in the batch (frames in time order along the batch axis).

    A pixel is still when every channel of the input changed by at most ``still_tol`` grey
    levels (``image`` normalised to [-1, 1], so the threshold is ``still_tol / 127.5``): the
    same notion as ``temporal.flicker_score``, which this term lowers on the training clip.
    Both frames' mattes receive gradients. Returns 0 when no pixel is still or B < 2.
    """
    pred_matte, image = at_least_fp32(pred_matte, image)
    if pred_matte.shape[0] < 2:
        return jnp.zeros((), pred_matte.dtype)
    change = jnp.max(jnp.abs(image[1:] - image[:-1]), axis=-1, keepdims=True)
    still = jax.lax.stop_gradient((change <= still_tol / 127.5).astype(jnp.float32))
    diff = jnp.abs(pred_matte[1:] - pred_matte[:-1])
    return jnp.sum(still * diff) / jnp.maximum(jnp.sum(still), 1.0)
