"""Video evaluation for ``python -m modnet_jax.evaluate --layout video``: temporal metrics.

A clip is a video file or a folder of frames (images sorted by name). Its ground truth, matched
by name in the matte folder, is a matte video (first channel) or a folder of matte images with
the same number of frames. Each frame is matted as ``predict`` does (batched, One-Frame Delay
unless turned off; ``MattingEngine.video``), optionally rounded to 8 bits, then scored:

* with ground truth: per-frame MSE and MAD, and dtSSD and MESSDdt per frame pair
  (``modnet_jax.temporal``), averaged over the clip;
* always: the ground-truth-free flicker score (mean |a_t - a_(t-1)| where the input frame did
  not change).

Scoring runs in a worker thread while the model runs on the next frames.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from modnet_jax import metrics
from modnet_jax.imaging.files import VIDEO_EXTENSIONS as VIDEO_EXTS
from modnet_jax.imaging.files import is_video_path, list_files
from modnet_jax.imaging.video import iter_video
from modnet_jax.inference.images import InputError, read_image, read_matte
from modnet_jax.progress import Progress
from modnet_jax.temporal import FlickerMeter, TemporalMeter

CLIP_FIELDS = ("mse", "mad", "dtssd", "messddt", "flicker")
FRAME_FIELDS = ("mse", "mad", "dtssd", "messddt")


@dataclass
class Clip:
    name: str
    source: str                 # video file or folder of frames
    matte: Optional[str]        # ground truth: video file or folder of mattes, or None


def _entries(folder: Optional[str]) -> Dict[str, str]:
    """{name: path} of the videos (by stem) and frame folders (by folder name) in ``folder``."""
    if not folder or not os.path.isdir(folder):
        return {}
    out: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        stem, ext = os.path.splitext(name)
        if os.path.isdir(path):
            out.setdefault(name, path)
        elif is_video_path(name):
            out.setdefault(stem, path)
    return out


def find_clips(root: str, video_dir: str = "video", matte_dir: str = "matte") -> List[Clip]:
    """Clips of ``root/video_dir`` with their ground truth in ``root/matte_dir`` (if any).

    ``root`` may also be one video file or one frame folder (a single clip, no ground truth).
    Raises ``InputError`` when nothing is found.
    """
    if os.path.isfile(root):
        if not is_video_path(root):
            raise InputError(f"{root}: not a video file (extensions: {', '.join(VIDEO_EXTS)})")
        return [Clip(os.path.splitext(os.path.basename(root))[0], root, None)]
    if not os.path.isdir(root):
        raise InputError(f"{root}: no such file or folder")
    videos = _entries(os.path.join(root, video_dir))
    if not videos:
        if _frame_files(root):
            return [Clip(os.path.basename(root.rstrip(os.sep)), root, None)]
        raise InputError(f"{root}: no clips (looked for videos or frame folders in "
                         f"{video_dir}/, or frames in the folder itself)")
    mattes = _entries(os.path.join(root, matte_dir))
    return [Clip(name, path, mattes.get(name)) for name, path in videos.items()]


def _frame_files(folder: str) -> List[str]:
    """The image files of a frame folder (not its subfolders), sorted by name."""
    return list(list_files(folder, recursive=False).values())


def read_frames(path: str) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file or a folder of images (sorted by name)."""
    if os.path.isdir(path):
        return (read_image(p) for p in _frame_files(path))
    return iter_video(path)


def read_mattes(path: str) -> Iterator[np.ndarray]:
    """Ground-truth mattes [H, W] of a matte video or a folder of matte images: uint8 0..255 for
    8-bit sources, float alpha in [0, 1] for 16-bit files."""
    if os.path.isdir(path):
        return (read_matte(p, keep_uint8=True) for p in _frame_files(path))
    return iter_video(path, grey=True)


def clip_mattes(engine, frames, ofd: bool = True) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(RGB frame, matte) in order from ``engine.video`` (batched, One-Frame Delay on the
    device with the engine's threshold)."""
    for result in engine.video(frames, ofd=ofd, with_image=True):
        yield result.image, result.matte


class _ClipScorer:
    """Per-frame scoring state of one clip (runs in the scoring thread)."""

    def __init__(self, name: str, precision: str, messddt: bool):
        self.name, self.precision = name, precision
        self.temporal = TemporalMeter(messddt)
        self.flicker = FlickerMeter()
        self.rows: List[dict] = []

    def update(self, rgb, matte, gt) -> None:
        if self.precision == "8bit":
            matte = metrics.quantize_8bit(matte)
        self.flicker.update(rgb, matte)
        if gt is not None:
            if gt.shape != matte.shape:
                raise InputError(f"{self.name}: ground-truth matte {gt.shape} differs from "
                                 f"the frame's {matte.shape}")
            if self.precision == "8bit":
                gt = metrics.quantize_8bit(gt)
            row = self.temporal.update(matte, gt)
            self.rows.append({"name": self.name, "frame": len(self.rows), **row})


def evaluate_clip(engine, clip: Clip, ofd: bool = True, precision: str = "8bit",
                  messddt: bool = True, pool=None, bar: Optional[Progress] = None
                  ) -> Tuple[dict, List[dict]]:
    """(clip row, frame rows). Raises ``InputError`` for unreadable files or frame counts that
    differ from the ground truth's."""
    scorer = _ClipScorer(clip.name, precision, messddt)
    gts = read_mattes(clip.matte) if clip.matte else None
    pending: deque = deque()
    frames = 0
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")
    try:
        for rgb, matte in clip_mattes(engine, read_frames(clip.source), ofd):
            gt = None
            if gts is not None:
                gt = next(gts, None)
                if gt is None:
                    raise InputError(f"{clip.matte}: ground truth has {frames} frames, "
                                     f"fewer than {clip.source}")
            pending.append(pool.submit(scorer.update, rgb, matte, gt))
            frames += 1
            while len(pending) > 4 or (pending and pending[0].done()):
                pending.popleft().result()
                if bar is not None:
                    bar.update()
        while pending:
            pending.popleft().result()
            if bar is not None:
                bar.update()
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    if frames == 0:
        raise InputError(f"{clip.source}: no frames")
    if gts is not None and next(gts, None) is not None:
        raise InputError(f"{clip.matte}: ground truth has more frames than {clip.source} "
                         f"({frames})")
    summary = scorer.temporal.summary() if gts is not None else {}
    row = {"name": clip.name, "frames": frames, "ground_truth": clip.matte is not None,
           "precision": precision, "ofd": ofd,
           **{k: summary.get(k, float("nan")) for k in CLIP_FIELDS if k != "flicker"},
           "flicker": scorer.flicker.value}
    return row, scorer.rows


def evaluate_clips(engine, clips: Sequence[Clip], ofd: bool = True, precision: str = "8bit",
                   messddt: bool = True, progress: bool = False
                   ) -> Tuple[List[dict], List[dict], Dict, List[Tuple[str, str]]]:
    """(clip rows, frame rows, summary, failures); summary = means over clips and counts."""
    clip_rows: List[dict] = []
    frame_rows: List[dict] = []
    failures: List[Tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") as pool:
        for clip in clips:
            bar = Progress(None, desc=clip.name, unit="frames", enabled=progress)
            try:
                row, frames = evaluate_clip(engine, clip, ofd, precision, messddt, pool, bar)
                clip_rows.append(row)
                frame_rows.extend(frames)
            except InputError as exc:
                failures.append((clip.source, str(exc)))
                bar.note(f"error: {exc}")
            bar.close()
    with_gt = [r for r in clip_rows if r["ground_truth"]]
    summary = {**metrics.average_metrics(with_gt, FRAME_FIELDS),
               **metrics.average_metrics(clip_rows, ("flicker",)),
               "clips": len(clip_rows), "clips_with_ground_truth": len(with_gt)}
    return clip_rows, frame_rows, summary, failures


def format_table(clip_rows: Sequence[dict], summary: Dict) -> str:
    """One line per clip and a mean line."""
    head = f"{'clip':<20}{'frames':>7}" + "".join(f"{k.upper():>11}" for k in CLIP_FIELDS)
    lines = [head, "-" * len(head)]
    for r in list(clip_rows) + [{"name": "mean", "frames": "", **summary}]:
        cells = "".join(f"{r[k]:>11.5g}" for k in CLIP_FIELDS)
        lines.append(f"{str(r['name'])[:19]:<20}{r['frames']!s:>7}{cells}")
    lines.append("MSE, MAD: means over frames; dtSSD (x100) and MESSDdt (x1e4): means over frame "
                 "pairs; FLICKER: mean |a_t - a_(t-1)| where the input did not change.")
    return "\n".join(lines)
