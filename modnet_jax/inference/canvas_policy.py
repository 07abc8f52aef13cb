"""Which canvas a photo runs on: the engine's choice of compiled model shapes for photos.

The model can run on a zero-padded canvas told each sample's valid size (``models.canvas``);
the mattes equal the model on the photo's own size, so one compiled model serves every model
input size that fits its canvas. On a CPU compiling the model costs about as much as matting
8-12 photos at 512x672, so the policy trades padding (wasted compute) against compiles:

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

from typing import Dict, List, Tuple

ASPECT = 7 / 4
MAX_AREA = 2.0
REFIT = 8.0


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
