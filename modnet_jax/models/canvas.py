"""Running MODNet on a larger zero-padded canvas with the exact results of the image's own size.

A compiled XLA program serves one input shape, and on a CPU compiling the model takes as long
as matting several photos, so a folder of photos of many sizes would pay a compile per size.
``canvas_apply`` lets one program serve every size that fits a canvas: each image sits in the
top-left corner of a ``height x width`` canvas and the model is told every sample's valid
size. The model modules know nothing of this: a Flax method interceptor
(``nn.intercept_methods``) changes the few places where the plain model would look past the
image's border, so that the canvas model sees what the plain one sees:

* every convolution wider than 1x1 reads zeros past the border (its zero padding): its input
  is masked to the valid region first (``nn.Conv``, ``DepthwiseConv``, ``Conv2d.conv_input``
  and ``Conv2d.upsampled_conv``, which upsamples inside the conv);
* the global means (``SpatialMean``: the SE block's pooling, the instance-norm half of IBNorm)
  average the valid region only;
* the bilinear x2 upsampling (``Upsample2x``, ``Conv2d(upsample=True)``) clamps at the image's
  last row and column, not the canvas's: they are repeated outwards first;
* 1x1 convolutions, BatchNorm with running statistics, activations and the 2x / 4x bilinear
  downsampling of the image are per pixel or read only inside the region, so values past it
  may be anything: they never reach a valid output.

Strided convolutions sample the same positions as on the image alone because valid sizes are
multiples of 32 (the model's total stride) and the image starts at the canvas origin. So the
valid region of the canvas output equals the plain output up to float32 summation order
(tests/test_canvas.py compares the two with randomised variables). Inference only: BatchNorm
with batch statistics would need masked statistics too, and is refused.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from modnet_jax.models.layers import (BatchNorm, Conv2d, DepthwiseConv, SpatialMean,
                                      Upsample2x)
from modnet_jax.models.ops import conv_upsampled_taps, upsample2x_bilinear


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

    def valid(self, x, margin: int = 0) -> Tuple[jax.Array, jax.Array]:
        """Valid (rows, cols) [B] of a feature map x [B, h, w, C] of this canvas (x carrying
        ``margin`` extra pixels on each side)."""
        h, w = x.shape[1] - 2 * margin, x.shape[2] - 2 * margin
        if self.height % h or self.width % w or self.height // h != self.width // w:
            raise ValueError(f"a {h}x{w} feature map is not a stride of the "
                             f"{self.height}x{self.width} canvas")
        stride = self.height // h
        return self.rows // stride, self.cols // stride

    def inside(self, x, margin: int = 0) -> jax.Array:
        """bool [B, h, w, 1]: True on the valid region of x's resolution (which starts at
        ``margin`` in each spatial axis)."""
        rows, cols = self.valid(x, margin)
        r = jnp.arange(x.shape[1])[None, :] - margin
        c = jnp.arange(x.shape[2])[None, :] - margin
        r = (r >= 0) & (r < rows[:, None])
        c = (c >= 0) & (c < cols[:, None])
        return (r[:, :, None] & c[:, None, :])[..., None]

    def mask(self, x, margin: int = 0):
        """x with zeros outside each sample's valid region."""
        return jnp.where(self.inside(x, margin), x, jnp.zeros((), x.dtype))

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

    # ------------------------------------------------------------------ the interceptor

    def intercept(self, next_fun, args, kwargs, context):
        """``nn.intercept_methods`` interceptor: the changes listed in the module docstring."""
        module, method = context.module, context.method_name
        if method == "__call__" and isinstance(module, SpatialMean):
            return self.mean(args[0])
        if method == "__call__" and isinstance(module, Upsample2x):
            return next_fun(self.extend(args[0]))
        if method == "__call__" and isinstance(module, BatchNorm) and \
                not module.use_running_average:
            raise ValueError("a Canvas is for inference only: BatchNorm with batch statistics "
                             "would average the padding")
        if method == "__call__" and isinstance(module, nn.Conv) and \
                max(module.kernel_size) > 1:
            return next_fun(self.mask(args[0]), *args[1:], **kwargs)
        if method == "__call__" and isinstance(module, DepthwiseConv):
            # An input that carries its own zero padding (``padding`` below 'same') keeps it.
            k, d = module.kernel_size, module.dilation
            same = d * (k - 1) // 2
            margin = same - (same if module.padding is None else module.padding)
            return next_fun(self.mask(args[0], margin), *args[1:], **kwargs)
        if isinstance(module, Conv2d) and method == "conv_input":
            y = args[0]
            out = next_fun(self.extend(y) if module.upsample else y)
            return self.mask(out) if module.kernel_size > 1 else out
        if isinstance(module, Conv2d) and method == "upsampled_conv":
            y, kernel = args
            return conv_upsampled_taps(
                y, kernel, upsample=lambda z: self.mask(upsample2x_bilinear(self.extend(z))))
        return next_fun(*args, **kwargs)


def canvas_apply(model, variables, x, sizes, **apply_kwargs):
    """``model.apply(variables, x, **apply_kwargs)`` for canvases x [B, H, W, 3] whose samples
    have valid sizes ``sizes`` [B, 2] (rows, cols; multiples of 32, top-left corner): each
    sample's outputs in its valid corner equal the model on that corner alone."""
    canvas = Canvas.of(sizes, x.shape[1], x.shape[2])
    with nn.intercept_methods(canvas.intercept):
        return model.apply(variables, x, **apply_kwargs)
