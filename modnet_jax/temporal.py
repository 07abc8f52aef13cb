"""Temporal quality of video mattes: flicker without ground truth, dtSSD and MESSDdt with it.

**Without ground truth.**

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

**With ground-truth mattes** (a_t predicted, g_t true, alpha in [0, 1], P pixels a frame), the
video-matting conventions (RVM's evaluation for dtSSD; Erofeev et al. 2015 for MESSDdt):

* dtSSD of a frame pair = 100 * sqrt(sum_p ((a_t - a_(t-1)) - (g_t - g_(t-1)))^2 / P): how much
  the matte's change between frames differs from the true change. RVM's tables print this
  scale (their "x 1e2"). The clip's value is the mean over its T - 1 pairs. (RVM's spreadsheet
  also counts a 0 for the first frame, i.e. reports (T - 1) / T of this.)
* MESSDdt of a pair = 1e4 * sum_p |E_(t-1)(p) - E_t(p + v(p))| / P with E = (a - g)^2 and v the
  optical flow from g_(t-1) to g_t (OpenCV Farneback on the 8-bit ground truth, pyramid scale
  0.5, 5 levels, window 10, 2 iterations, poly_n 7, poly_sigma 1.5, Gaussian window: the
  parameters video-matting evaluations use); p + v(p) is rounded to the nearest pixel and
  clamped to the frame. It measures how much the error changes along the motion, so a
  constant error that moves with the subject costs nothing while flicker does. The clip's
  value is the mean over pairs. Published MESSDdt figures use several normalisations; compare
  only numbers computed the same way.

``TemporalMeter`` computes both (plus per-frame MSE and MAD) from a stream of (pred, gt).

**One-Frame Delay** (the paper's de-flicker; ``one_frame_delay``, ``OneFrameDelay``, on the
host): pixel i of matte a(t) flickers when a(t-1)[i] and a(t+1)[i] agree (differ by at most
``threshold``) while a(t)[i] differs from both by more; it is replaced by their mean. The
neighbours are the *raw* predictions of frames t-1 and t+1, so the output lags the input by
one frame; the first and last frames have only one neighbour and pass through unchanged.
``MattingEngine.video`` runs the same on the device and is tested against this definition.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from modnet_jax.inference.options import OFD_THRESHOLD

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


# ------------------------------------------------------------------ with ground truth

#: cv2.calcOpticalFlowFarneback(prev, next, None, *FARNEBACK, flags) as evaluations use it.
FARNEBACK = (0.5, 5, 10, 2, 7, 1.5)
TEMPORAL_NAMES = ("dtssd", "messddt")


def dtssd_pair(pred, pred_prev, gt, gt_prev) -> float:
    """dtSSD of one frame pair (x 100 scale; see the module doc)."""
    a, ap, g, gp = (_as_matte(x) for x in (pred, pred_prev, gt, gt_prev))
    _check_shapes(a, ap, g, gp)
    d = (a - ap) - (g - gp)
    return 100.0 * math.sqrt(float(np.dot(d.ravel(), d.ravel())) / d.size)


def ground_truth_flow(gt_prev, gt) -> np.ndarray:
    """[H, W, 2] float32 optical flow (dx, dy) from ``gt_prev`` to ``gt`` (Farneback, 8-bit)."""
    prev8, cur8 = (np.clip(np.rint(_as_matte(x) * 255.0), 0, 255).astype(np.uint8)
                   for x in (gt_prev, gt))
    return cv2.calcOpticalFlowFarneback(prev8, cur8, None, *FARNEBACK,
                                        cv2.OPTFLOW_FARNEBACK_GAUSSIAN)


def messddt_pair(pred, pred_prev, gt, gt_prev, flow: Optional[np.ndarray] = None) -> float:
    """MESSDdt of one frame pair (x 1e4 scale); ``flow`` defaults to ``ground_truth_flow``."""
    a, ap, g, gp = (_as_matte(x) for x in (pred, pred_prev, gt, gt_prev))
    _check_shapes(a, ap, g, gp)
    if flow is None:
        flow = ground_truth_flow(gp, g)
    flow = np.asarray(flow)
    if flow.shape != a.shape + (2,):
        raise ValueError(f"flow shape {flow.shape} != {a.shape + (2,)}")
    h, w = a.shape
    yy, xx = np.mgrid[:h, :w]
    x1 = np.clip(xx + np.rint(flow[..., 0]).astype(np.int64), 0, w - 1)
    y1 = np.clip(yy + np.rint(flow[..., 1]).astype(np.int64), 0, h - 1)
    err_prev = (ap - gp) ** 2
    err_now = ((a - g) ** 2)[y1, x1]
    return 1e4 * float(np.abs(err_prev - err_now).sum()) / a.size


def _check_shapes(*mattes) -> None:
    shapes = {m.shape for m in mattes}
    if len(shapes) != 1:
        raise ValueError(f"mattes of a frame pair differ in shape: {sorted(shapes)}")


class TemporalMeter:
    """Streaming video metrics against ground truth: ``update(pred, gt)`` once per frame.

    ``frames`` holds {"mse", "mad"} per frame, plus "dtssd" and "messddt" from the second
    frame on (for the pair ending at that frame); ``summary()`` gives the clip's means.
    ``messddt=False`` skips the optical flow (the slow part).
    """

    def __init__(self, messddt: bool = True):
        self.with_messddt = bool(messddt)
        self.frames: List[Dict[str, float]] = []
        self._prev: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def update(self, pred, gt) -> Dict[str, float]:
        a, g = _as_matte(pred), _as_matte(gt)
        if a.shape != g.shape:
            raise ValueError(f"predicted matte {a.shape} and ground truth {g.shape} differ")
        diff = a - g
        row = {"mse": float(np.dot(diff.ravel(), diff.ravel())) / diff.size,
               "mad": float(np.abs(diff).mean())}
        if self._prev is not None:
            ap, gp = self._prev
            if ap.shape != a.shape:
                raise ValueError(f"frame size changed from {ap.shape} to {a.shape}")
            row["dtssd"] = dtssd_pair(a, ap, g, gp)
            if self.with_messddt:
                row["messddt"] = messddt_pair(a, ap, g, gp)
        self._prev = (a, g)
        self.frames.append(row)
        return row

    def summary(self) -> Dict[str, float]:
        """{"mse", "mad"}: means over frames; {"dtssd", "messddt"}: means over pairs (nan if
        fewer than two frames); "frames": the count."""
        out: Dict[str, float] = {}
        for name in ("mse", "mad", *TEMPORAL_NAMES):
            values = [r[name] for r in self.frames if name in r]
            out[name] = float(np.mean(values)) if values else math.nan
        out["frames"] = len(self.frames)
        return out


def temporal_metrics(preds: Iterable, gts: Iterable, messddt: bool = True) -> Dict[str, float]:
    """``TemporalMeter(messddt).summary()`` of a whole clip (sequences of mattes)."""
    meter = TemporalMeter(messddt)
    for pred, gt in zip(preds, gts, strict=True):
        meter.update(pred, gt)
    return meter.summary()


# ---------------------------------------------------------------- One-Frame Delay

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
