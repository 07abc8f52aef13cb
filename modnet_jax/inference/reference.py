"""The release's processing on the host (numpy): the resize rule, area resizes, pre- and
post-processing, and One-Frame Delay. The engine computes the same on the device
(``programs.py``) and is tested against these definitions.

The resize rule (docs/inference.md, as the release's demo scripts apply it):

1. If the long side is below ``ref_size`` or the short side above it, scale so the short side
   is ``ref_size`` (the long side becomes ``int(long / short * ref_size)``); an image whose
   sides straddle ``ref_size`` keeps its size.
2. Floor both sides to multiples of 32 (never below 32, where the release would fail).
   Bounded memory (our addition): when the result's long side exceeds ``max_long_side`` or its
   area ``max_pixels``, both sides are scaled down by one factor until both caps hold (still
   multiples of 32, at least 32). The release's rule asks for 153,600 x 512 on a 300 x 1
   image; capped (defaults 2048 / 2,097,152) it runs at 2048 x 32. Images the rule keeps
   under the caps (every usual photo or video frame) are not affected.
3. Resize with PyTorch's "area" interpolation (adaptive average pooling).
4. After prediction, resize the matte back to the original size, "area" again (or bilinear).

One-Frame Delay (the paper's temporal de-flicker): pixel i of matte a(t) flickers when
a(t-1)[i] and a(t+1)[i] agree (differ by at most ``threshold``) while a(t)[i] differs from
both by more; it is replaced by their mean. The neighbours are the *raw* predictions of frames
t-1 and t+1, so the output lags the input by one frame; the first and last frames have only
one neighbour and pass through unchanged.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, List, Optional, Tuple

import cv2
import numpy as np

from modnet_jax.inference.options import (MAX_LONG_SIDE, MAX_PIXELS, MULTIPLE,  # noqa: F401
                                          OFD_THRESHOLD, REF_SIZE)


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
    """(rh, rw) the model runs at for an image of ``height`` x ``width`` pixels.

    ``max_long_side`` / ``max_pixels`` (None: no cap) bound the result as the module says.
    """
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


def _area_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Adaptive average pooling of ``x`` along ``axis`` to ``n_out`` cells (float64 sums).

    Output cell i averages input indices floor(i * n_in / n_out) .. ceil((i+1) * n_in / n_out)-1
    (PyTorch's ``interpolate(mode='area')``; when upscaling each output copies one input).
    Computed from a cumulative sum, so the cost is linear in the input size.
    """
    n_in = x.shape[axis]
    i = np.arange(n_out)
    starts = (i * n_in) // n_out
    ends = -((-(i + 1) * n_in) // n_out)
    csum = np.cumsum(x, axis=axis, dtype=np.float64)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    csum = np.pad(csum, pad)
    shape = [1] * x.ndim
    shape[axis] = n_out
    counts = (ends - starts).reshape(shape)
    return (np.take(csum, ends, axis=axis) - np.take(csum, starts, axis=axis)) / counts


def area_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize [H, W] or [H, W, C] to ``height`` x ``width`` with area (adaptive-average) weights.

    Returns float32; rows first, then columns.
    """
    x = np.asarray(x)
    if x.shape[:2] == (height, width):
        return x.astype(np.float32)
    out = _area_axis(x, height, 0)
    out = _area_axis(out, width, 1)
    return out.astype(np.float32)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB from gray [H, W] / [H, W, 1], RGB or RGBA (alpha dropped)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image


def preprocess(image: np.ndarray, ref_size: int = REF_SIZE) -> np.ndarray:
    """Model input [rh, rw, 3] float32 in [-1, 1] from an RGB image (uint8 0..255)."""
    rgb = to_rgb_uint8(image)
    rh, rw = model_input_size(rgb.shape[0], rgb.shape[1], ref_size)
    return area_resize(rgb, rh, rw) / 127.5 - 1.0


def postprocess(matte: np.ndarray, height: int, width: int, mode: str = "area") -> np.ndarray:
    """The model's matte [rh, rw] (or [rh, rw, 1]) resized back to ``height`` x ``width``.

    ``mode``: "area" (the release) or "bilinear" (smoother when upscaling). Float32 in [0, 1].
    """
    m = np.asarray(matte, dtype=np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    if mode == "area":
        out = area_resize(m, height, width)
    elif mode == "bilinear":
        out = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        raise ValueError(f"resize mode must be 'area' or 'bilinear', got {mode!r}")
    return np.clip(out, 0.0, 1.0)



def one_frame_delay(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray,
                    threshold: float = OFD_THRESHOLD) -> np.ndarray:
    """De-flickered copy of ``cur`` given its neighbours; mattes of equal shape, alpha in [0, 1]."""
    prev = np.asarray(prev, dtype=np.float32)
    cur = np.asarray(cur, dtype=np.float32)
    nxt = np.asarray(nxt, dtype=np.float32)
    flicker = ((np.abs(prev - nxt) <= threshold)
               & (np.abs(cur - prev) > threshold)
               & (np.abs(cur - nxt) > threshold))
    return np.where(flicker, 0.5 * (prev + nxt), cur)


class OneFrameDelay:
    """Streaming OFD. ``push(matte, item)`` returns the (matte, item) pairs now ready, in order.

    ``item`` is carried along untouched (e.g. the video frame the matte belongs to), so a caller
    can composite each output matte with its own frame despite the delay. With ``enabled=False``
    every push is returned at once (no delay). Call ``flush()`` at the end of the stream.
    """

    def __init__(self, threshold: float = OFD_THRESHOLD, enabled: bool = True):
        self.threshold = float(threshold)
        self.enabled = bool(enabled)
        self._window: deque = deque(maxlen=3)
        self._emitted_first = False

    def push(self, matte: np.ndarray, item: Any = None) -> List[Tuple[np.ndarray, Any]]:
        if not self.enabled:
            return [(np.asarray(matte), item)]
        self._window.append((np.asarray(matte), item))
        if len(self._window) < 2:
            return []
        if not self._emitted_first:
            self._emitted_first = True
            return [self._window[0]]
        (prev, _), (cur, cur_item), (nxt, _) = self._window
        return [(one_frame_delay(prev, cur, nxt, self.threshold), cur_item)]

    def flush(self) -> List[Tuple[np.ndarray, Any]]:
        """The frame still held back (the last one, unchanged); resets the stream."""
        out = [self._window[-1]] if self.enabled and self._window else []
        self._window.clear()
        self._emitted_first = False
        return out
