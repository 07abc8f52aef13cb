"""Temporal quality of video mattes: how much a matte flickers where nothing moved.

``flicker_score`` needs no ground truth: over consecutive frame pairs it averages
|a_t - a_(t-1)| over the pixels whose input colour did not change (every channel within
``still_tol`` grey levels of 255). A perfect matting model gives 0 on such pixels, so what
remains is flicker: the matte changing although the picture did not. One-Frame Delay and SOC
adaptation should both lower it.

The score is pooled over the clip: sum of |a_t - a_(t-1)| over every still pixel of every pair,
divided by the number of still pixels (so long static stretches weigh by their size). A clip
with no still pixel at all gives ``nan``.

``FlickerMeter`` computes the same value incrementally from a stream of (frame, matte) pairs, so
predict can report it without keeping the clip in memory.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Tuple

import numpy as np

#: Default tolerance, in 8-bit grey levels, for "the input did not change" (absorbs codec noise
#: of a re-encoded static background; a moving subject changes by far more).
STILL_TOL = 2


def _as_frame(frame) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim == 2:
        f = f[..., None]
    if f.ndim != 3:
        raise ValueError(f"a frame must be [H, W] or [H, W, C], got shape {f.shape}")
    if f.dtype == np.uint8:
        return f.astype(np.int16)
    # float frames in [0, 1] are compared on the same 0..255 scale
    return np.round(np.asarray(f, np.float64) * 255.0).astype(np.int16)


def _as_matte(matte) -> np.ndarray:
    a = np.asarray(matte)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"a matte must be [H, W] or [H, W, 1], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return a.astype(np.float64)


class FlickerMeter:
    """Running flicker score: ``update(frame, matte)`` per frame, ``value`` at any time."""

    def __init__(self, still_tol: int = STILL_TOL):
        self.still_tol = int(still_tol)
        self.total = 0.0       # sum of |a_t - a_(t-1)| over still pixels
        self.count = 0         # number of still pixels seen
        self.pairs = 0         # frame pairs seen
        self._prev: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def update(self, frame, matte) -> None:
        f, a = _as_frame(frame), _as_matte(matte)
        if f.shape[:2] != a.shape:
            raise ValueError(f"frame size {f.shape[:2]} != matte size {a.shape}")
        if self._prev is not None:
            pf, pa = self._prev
            if pf.shape != f.shape:
                raise ValueError(f"frame shape changed from {pf.shape} to {f.shape}")
            still = np.max(np.abs(f - pf), axis=-1) <= self.still_tol
            self.total += float(np.abs(a - pa)[still].sum())
            self.count += int(still.sum())
            self.pairs += 1
        self._prev = (f, a)

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else math.nan


def flicker_score(frames: Iterable, mattes: Iterable, still_tol: int = STILL_TOL) -> float:
    """Mean |a_t - a_(t-1)| over pixels whose input frame did not change (see module doc).

    ``frames``: uint8 [H, W, C] (or float in [0, 1]); ``mattes``: float [H, W] in [0, 1] or uint8.
    """
    meter = FlickerMeter(still_tol)
    for frame, matte in zip(frames, mattes, strict=True):
        meter.update(frame, matte)
    return meter.value
