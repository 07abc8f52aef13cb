"""What size a photo runs at: the model input size (the release's resize rule within our caps)
and the canvas, the compiled model shape it shares with photos of other sizes.

**The resize rule** (as the release's demo scripts apply it; ``model_input_size``):

1. If the long side is below ``ref_size`` or the short side above it, scale so the short side
   is ``ref_size`` (the long side becomes ``int(long / short * ref_size)``); an image whose
   sides straddle ``ref_size`` keeps its size.
2. Floor both sides to multiples of 32 (never below 32, where the release would fail).
3. Bounded memory (our addition): when the result's long side exceeds ``max_long_side`` or its
   area ``max_pixels``, both sides are scaled down by one factor until both caps hold (still
   multiples of 32, at least 32). The rule asks for 153,600 x 512 on a 300 x 1 image; capped
   (defaults 2048 / 2,097,152) it runs at 2048 x 32. Usual photos and video frames are not
   affected.

The engine then resizes with PyTorch's "area" interpolation (adaptive average pooling) and the
matte back to the image size, "area" again (or bilinear).

**Canvases** (``CanvasPolicy``). The model can run on a zero-padded canvas told each sample's
valid size (``models.canvas``); the mattes equal the model on the photo's own size, so one
compiled model serves every model input size that fits its canvas. Compiling the model costs
about as much as matting several photos, so the policy trades padding (wasted compute)
against compiles:

- a new canvas is generous: it keeps the size's short side and stretches the long side to
  ``ASPECT`` times the short side (within the engine's caps), so the usual photo shapes of one
  orientation (1:1 up to 16:9) share it: 512x672 makes 512x896, a portrait 672x512 makes
  896x512;
- a size uses the smallest compiled canvas that holds it and has at most ``MAX_AREA`` times
  its area;
- a size whose photos have wasted ``refit`` photos' worth of canvas gets a canvas of its own
  (a folder of thousands of 4:3 photos then runs at its exact size after a few of them).

The choice depends only on the order of the sizes asked for, so a second run of the same
folder asks for the same canvases and compiles nothing.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

from modnet_jax.inference.options import MULTIPLE, REF_SIZE

ASPECT = 7 / 4
MAX_AREA = 2.0
REFIT = 8.0


def _cap(rh: int, rw: int, max_long_side: Optional[int], max_pixels: Optional[int]
         ) -> Tuple[int, int]:
    scale = 1.0
    if max_long_side and max(rh, rw) > max_long_side:
        scale = max_long_side / max(rh, rw)
    if max_pixels and rh * rw * scale * scale > max_pixels:
        scale = min(scale, math.sqrt(max_pixels / (rh * rw)))
    if scale >= 1.0:
        return rh, rw
    h, w = int(rh * scale), int(rw * scale)
    return max(MULTIPLE, h - h % MULTIPLE), max(MULTIPLE, w - w % MULTIPLE)


def model_input_size(height: int, width: int, ref_size: int = REF_SIZE,
                     max_long_side: Optional[int] = None, max_pixels: Optional[int] = None
                     ) -> Tuple[int, int]:
    """(rh, rw) the model runs at for an image of ``height`` x ``width`` pixels: the resize
    rule, bounded by ``max_long_side`` / ``max_pixels`` (None: no cap)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    rh, rw = height, width
    if max(height, width) < ref_size or min(height, width) > ref_size:
        if width >= height:
            rh, rw = ref_size, int(width / height * ref_size)
        else:
            rh, rw = int(height / width * ref_size), ref_size
    rh = max(MULTIPLE, rh - rh % MULTIPLE)
    rw = max(MULTIPLE, rw - rw % MULTIPLE)
    return _cap(rh, rw, max_long_side, max_pixels)


class CanvasPolicy:
    """Canvases chosen so far and each size's waste; ``enabled=False``: every size is its own
    canvas and nothing is recorded. ``max_pixels`` / ``max_long_side``: the engine's caps on
    the model input, which a new canvas respects (unless the size itself is beyond them)."""

    def __init__(self, enabled: bool = True, refit: float = REFIT, *, max_pixels: int,
                 max_long_side: int):
        self.enabled = bool(enabled)
        self.refit = float(refit)
        self.max_pixels = int(max_pixels)
        self.max_long_side = int(max_long_side)
        self.canvases: List[Tuple[int, int]] = []
        self._waste: Dict[Tuple[int, int], float] = {}

    def choose(self, rh: int, rw: int, count: int = 1) -> Tuple[int, int]:
        """The canvas (height, width) that ``count`` photos of model input size rh x rw run on
        next; records it (and the padding those photos waste)."""
        if not self.enabled or (rh, rw) in self.canvases:
            return rh, rw
        area = rh * rw
        fits = [c for c in self.canvases
                if c[0] >= rh and c[1] >= rw and c[0] * c[1] <= MAX_AREA * area]
        if fits:
            best = min(fits, key=lambda c: c[0] * c[1])
            waste = self._waste.get((rh, rw), 0.0) + count * (1 - area / (best[0] * best[1]))
            if waste < self.refit:
                self._waste[(rh, rw)] = waste
                return best
            new = (rh, rw)  # this size has wasted enough: its own canvas from now on
        else:
            short, long_ = min(rh, rw), max(rh, rw)
            wide = max(long_, -(-int(short * ASPECT) // 32) * 32)
            if short * wide > max(self.max_pixels, area) or wide > max(self.max_long_side, long_):
                wide = long_
            new = (short, wide) if rh <= rw else (wide, short)
        self.canvases.append(new)
        return new
