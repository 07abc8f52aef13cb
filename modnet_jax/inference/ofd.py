"""One-Frame Delay (OFD): the paper's temporal de-flicker for video mattes (docs/inference.md).

Pixel i of matte a(t) flickers when a(t-1)[i] and a(t+1)[i] agree (differ by at most ``xi``)
while a(t)[i] differs from both by more than ``xi``; it is replaced by their mean. The
neighbours used are the *raw* predictions of frames t-1 and t+1. Because frame t needs frame
t+1, the output lags the input by one frame; the first and last frames have only one neighbour
and pass through unchanged (the last one is emitted by ``flush``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, List, Tuple

import numpy as np

from modnet_jax.inference.options import OFD_THRESHOLD


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
