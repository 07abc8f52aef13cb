"""Running MODNet on a larger zero-padded canvas with the exact results of the image's own size.

A compiled XLA program serves one input shape, and on a CPU compiling the model takes as long
as matting several photos. A folder of photos of many sizes therefore pays a compile per size.
``Canvas`` lets one program serve every size that fits in it: each image sits in the top-left
corner of a ``height x width`` canvas (the rest zeros) and the model is told the valid size of
every sample. Wherever the plain model would look past the image's border, the canvas model
sees what the plain one sees:

* every convolution wider than 1x1 reads zeros past the border (its zero padding): its input
  is masked (``mask``) to the valid region first;
* the global means (the SE block's pooling, the instance-norm half of IBNorm) average the
  valid region only (``mean``);
* the bilinear x2 upsampling clamps at the image's last row and column, not the canvas's
  (``extend`` repeats them outwards first);
* 1x1 convolutions, BatchNorm with running statistics, activations and the 2x / 4x bilinear
  downsampling of the image are per pixel or read only inside the region, so values past it
  may be anything: they never reach a valid output.

Strided convolutions sample the same positions as on the image alone because valid sizes are
multiples of 32 (the model's total stride) and the image starts at the canvas origin. So the
valid region of the canvas output equals the plain output up to float32 summation order
(tests/test_canvas.py compares the two at several sizes with randomised variables). Inference
only: BatchNorm with batch statistics would need masked statistics too, and is refused.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Canvas:
    """Valid sizes of the samples of a canvas batch.

    ``rows``, ``cols``: int32 [B], each sample's valid height and width at full resolution,
    positive multiples of 32 no larger than the canvas; ``height``, ``width``: the canvas's
    full-resolution size (static). Feature maps at stride s have valid sizes rows / s, cols / s.
    """

    rows: jax.Array
    cols: jax.Array
    height: int = struct.field(pytree_node=False)
    width: int = struct.field(pytree_node=False)

    @classmethod
    def of(cls, sizes, height: int, width: int) -> "Canvas":
        """A canvas ``height x width`` for valid sizes [(rows, cols), ...] (or an int [B, 2])."""
        sizes = jnp.asarray(sizes, jnp.int32).reshape(-1, 2)
        return cls(sizes[:, 0], sizes[:, 1], int(height), int(width))

    def valid(self, x) -> Tuple[jax.Array, jax.Array]:
        """Valid (rows, cols) [B] of a feature map x [B, h, w, C] of this canvas."""
        h, w = x.shape[1], x.shape[2]
        if self.height % h or self.width % w or self.height // h != self.width // w:
            raise ValueError(f"a {h}x{w} feature map is not a stride of the "
                             f"{self.height}x{self.width} canvas")
        stride = self.height // h
        return self.rows // stride, self.cols // stride

    def inside(self, x) -> jax.Array:
        """bool [B, h, w, 1]: True on the valid region of x's resolution."""
        rows, cols = self.valid(x)
        r = jnp.arange(x.shape[1])[None, :] < rows[:, None]
        c = jnp.arange(x.shape[2])[None, :] < cols[:, None]
        return (r[:, :, None] & c[:, None, :])[..., None]

    def mask(self, x):
        """x with zeros past each sample's valid region."""
        return jnp.where(self.inside(x), x, jnp.zeros((), x.dtype))

    def mean(self, x):
        """[B, C]: the mean of x [B, h, w, C] over each sample's valid region."""
        rows, cols = self.valid(x)
        total = jnp.sum(self.mask(x), axis=(1, 2))
        return total / (rows * cols).astype(total.dtype)[:, None]

    def extend(self, x):
        """x with each sample's last valid row and column repeated over the rest of the canvas
        (what the plain model's edge clamping reads)."""
        rows, cols = self.valid(x)
        ri = jnp.minimum(jnp.arange(x.shape[1])[None, :], rows[:, None] - 1)  # [B, h]
        ci = jnp.minimum(jnp.arange(x.shape[2])[None, :], cols[:, None] - 1)  # [B, w]
        return jax.vmap(lambda xi, r, c: xi[r][:, c])(x, ri, ci)
