"""Before/after report of an SOC run: held-out SOC loss and, for videos, flicker.

SOC has no labels, so what a user can measure on their own footage is

* the **held-out SOC loss**: SOC's objective (``losses.soc_loss``, M against the frozen
  unadapted copy M') on frames it did not train on, the mean over frames of each frame's
  loss on its own (``soc_loss_per_image``). Before adaptation M = M', so only the semantic
  consistency term counts; a fall says the adapted model's semantic and detail outputs agree
  better with each other without drifting from M' in the boundary band.
* for a video, the **flicker** of the matte (``temporal.flicker_score``: mean |a_t - a_(t-1)|
  over pixels whose input did not change), raw and after One-Frame Delay.

``train --config soc`` measures both on ``config.soc.report_from`` (a video file or an image
folder the run does not train on; default: ``report_frames`` frames drawn from the training
data, said to be not held out) before the first step and after the last, and logs them with
``verdict``: "better" only when the SOC loss fell and, for a video, flicker (raw and with
OFD) did not rise; otherwise it says which measure got worse. The measures are label-free:
benchmarks/soc_domain.py measures how well they track the true error (docs/soc.md).
"""

from __future__ import annotations

import logging
import os
from typing import Dict, Optional, Tuple

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from modnet_jax.losses import soc_loss
from modnet_jax.steps import normalize_image

LOGGER = logging.getLogger(__name__)


@jax.jit
def _per_image(sem, det, matte, frozen_det, frozen_matte):
    def one(s, d, m, fd, fm):
        return soc_loss(s[None], d[None], m[None], fd[None], fm[None])["total"]

    return jax.vmap(one)(sem, det, matte, frozen_det, frozen_matte)


def soc_loss_per_image(sem, det, matte, frozen_det, frozen_matte) -> np.ndarray:
    """SOC's loss (``losses.soc_loss`` total) of each image on its own: [N] float."""
    return np.asarray(_per_image(*(jnp.asarray(a, jnp.float32)
                                   for a in (sem, det, matte, frozen_det, frozen_matte))))


def flicker_pair(frames, mattes) -> Tuple[float, float]:
    """(flicker of the mattes, flicker after One-Frame Delay) on consecutive frames."""
    from modnet_jax.temporal import one_frame_delay
    from modnet_jax.temporal import flicker_score

    mattes = np.asarray(mattes, np.float32)
    ofd = mattes.copy()
    for t in range(1, len(mattes) - 1):
        ofd[t] = one_frame_delay(mattes[t - 1], mattes[t], mattes[t + 1])
    return flicker_score(frames, mattes), flicker_score(frames, ofd)


def square_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side resized to ``size`` (area interpolation), centre-cropped to a square."""
    h, w = image.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def load_report_frames(path: str, size: int, count: int) -> Tuple[np.ndarray, bool]:
    """(uint8 [N, size, size, 3], is_video): the first ``count`` consecutive frames of a
    video file, or the first ``count`` images (sorted by path) of a folder."""
    from modnet_jax.imaging.decode import decode_rgb
    from modnet_jax.imaging.files import is_video_path, list_files
    from modnet_jax.imaging.video import iter_video

    if os.path.isfile(path) and is_video_path(path):
        frames = []
        for f in iter_video(path):
            frames.append(square_crop(f, size))
            if len(frames) == count:
                break
        is_video = True
    else:
        frames = [square_crop(decode_rgb(p), size) for p in sorted(list_files(path))[:count]]
        is_video = False
    if len(frames) < (3 if is_video else 1):
        raise ValueError(f"soc.report_from: {path} gave {len(frames)} frames; a video needs "
                         f"3 or more, a folder 1 or more")
    return np.stack(frames), is_video


class SocReport:
    """The report's measures on fixed frames; ``measure(variables, frozen)`` -> dict."""

    def __init__(self, model, frames: np.ndarray, is_video: bool, held_out: bool = True,
                 chunk: int = 4):
        self.frames, self.is_video, self.held_out = frames, is_video, held_out
        self.frozen, self.before = None, {}  # set by ``start``
        self._reference = None  # (frozen variables, their outputs)
        self.chunk = chunk
        self._fwd = jax.jit(lambda v, x: model.apply(v, normalize_image(x), train=False))

    def _outputs(self, variables):
        n, pad = len(self.frames), (-len(self.frames)) % self.chunk
        x = np.concatenate([self.frames, np.repeat(self.frames[-1:], pad, 0)])
        outs = [jax.device_get(self._fwd(variables, x[i:i + self.chunk]))
                for i in range(0, len(x), self.chunk)]
        return [np.concatenate([o[k] for o in outs])[:n] for k in range(3)]

    def measure(self, variables, frozen) -> Dict[str, float]:
        """{"soc_loss"[, "flicker", "flicker_ofd"]} of ``variables`` against M' ``frozen``."""
        with jax.transfer_guard("allow"):  # a one-off measurement outside the step loop
            if self._reference is None or self._reference[0] is not frozen:
                self._reference = (frozen, self._outputs(frozen))  # M' outputs, computed once
            ref = self._reference[1]
            sem, det, matte = ref if variables is frozen else self._outputs(variables)
            frozen_det, frozen_matte = ref[1], ref[2]
            out = {"soc_loss": float(np.mean(soc_loss_per_image(sem, det, matte, frozen_det,
                                                                frozen_matte)))}
        if self.is_video:
            out["flicker"], out["flicker_ofd"] = flicker_pair(self.frames, matte[..., 0])
        return out


def verdict(before: Dict[str, float], after: Dict[str, float]) -> str:
    """One plain sentence: better / worse / unchanged by the report's label-free measures."""
    worse = [k for k in ("soc_loss", "flicker", "flicker_ofd")
             if k in before and after[k] > before[k]]
    if not worse:
        return ("better by these measures: held-out SOC loss lower"
                + (", flicker not higher" if "flicker" in before else ""))
    names = {"soc_loss": "held-out SOC loss", "flicker": "flicker",
             "flicker_ofd": "flicker with One-Frame Delay"}
    return ("NOT better: " + ", ".join(names[k] for k in worse) + " rose; consider keeping "
            "the unadapted model (init_from)")


def report_lines(before: Dict[str, float], after: Dict[str, float], frames: int,
                 is_video: bool, held_out: bool) -> list:
    what = (f"{frames} {'video frames' if is_video else 'images'}"
            + ("" if held_out else " drawn from the training data (not held out: set "
                                   "soc.report_from for a held-out measure)"))
    lines = [f"SOC report on {what}:"]
    for k, name in (("soc_loss", "SOC loss"), ("flicker", "flicker"),
                    ("flicker_ofd", "flicker+OFD")):
        if k in before:
            ratio = after[k] / before[k] if before[k] else float("nan")
            lines.append(f"  {name:<12} before {before[k]:.4g}  after {after[k]:.4g}  "
                         f"(x{ratio:.3f})")
    lines.append("  verdict: " + verdict(before, after))
    return lines


def start(config, model, frozen) -> Optional[SocReport]:
    """The report of an SOC run with its "before" measures taken (M' = ``frozen``), or None
    with ``soc.report_frames`` 0. Frames: ``soc.report_from``, else drawn from the training
    data with a seed of their own (not held out; the report says so)."""
    count = int(config.soc.get("report_frames", 0))
    if count <= 0:
        return None
    size = int(config.image_size)
    path = str(config.soc.get("report_from", "") or "")
    if path:
        report = SocReport(model, *load_report_frames(path, size, count))
    else:
        from modnet_jax.data import make_unlabelled_iterator, resolve_config

        host_made = dict(resolve_config(config.data).to_dict(), augment_on_device=False)
        it = make_unlabelled_iterator(host_made, batch_size=count, image_size=size,
                                      seed=int(config.seed) + 104729)
        report = SocReport(model, np.asarray(next(it)["image"]), False, held_out=False)
    report.frozen = frozen
    report.before = report.measure(frozen, frozen)
    LOGGER.info("SOC report, before adaptation: %s", ", ".join(
        f"{k} {v:.4g}" for k, v in report.before.items()))
    return report


def finish(report: SocReport, variables) -> dict:
    """Measure the adapted ``variables``, log the report; {"before", "after", "verdict"}."""
    after = report.measure(variables, report.frozen)
    for line in report_lines(report.before, after, len(report.frames), report.is_video,
                             report.held_out):
        LOGGER.info("%s", line)
    return {"before": report.before, "after": after, "verdict": verdict(report.before, after)}
