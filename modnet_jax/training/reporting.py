"""What a training run tells the user: progress line, JSONL, TensorBoard, PNG sample grids.

Only the chief process (``jax.process_index() == 0``) reports; on other hosts a ``Reporter``
is built with ``enabled=False`` and every call is a no-op, so callers never branch on it.

Files in the workdir:
  metrics.jsonl             one JSON object per logged step ({"step", "split", ...})
  tensorboard/              event files written by tensorboardX (scalars ``train/*`` (means
                            over the logging interval), ``val_crop/*`` (validation centre
                            crops at the training size); images ``val_crop/grid``)
  samples/step_XXXXXXX.png  input | predicted matte | ground truth, one row per sample

Never half-written (``imaging/output.py``): a grid is written under a temporary name and
renamed; a metrics record is appended whole or not at all. A write that fails (a full disk)
is a ``WriteError`` naming the file and the OS's reason; the run ends with that one line.
TensorBoard's event files are tensorboardX's (records with checksums: a reader skips a cut
last record); their write failures are WriteErrors naming the folder too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import Dict, Optional

import numpy as np

from tensorboardX import SummaryWriter

from modnet_jax.imaging import output
from modnet_jax.progress import Progress


def matte_grid(images: np.ndarray, pred: np.ndarray, alpha: Optional[np.ndarray]) -> np.ndarray:
    """uint8 RGB grid [N*H, 3*W, 3] (or 2*W without ground truth).

    images: uint8 [N, H, W, 3]; pred: float [N, H, W, 1] in [0, 1]; alpha: uint8 [N, H, W, 1].
    """
    pred_u8 = np.clip(np.round(np.asarray(pred, np.float32) * 255.0), 0, 255).astype(np.uint8)
    cols = [images, np.repeat(pred_u8, 3, axis=-1)]
    if alpha is not None:
        cols.append(np.repeat(alpha, 3, axis=-1))
    rows = [np.concatenate([c[i] for c in cols], axis=1) for i in range(images.shape[0])]
    return np.concatenate(rows, axis=0)


_DRAWING: list = []  # enabled reporters whose progress line is on screen, newest last


class LogHandler(logging.StreamHandler):
    """Writes log records to stderr on their own lines, clearing and redrawing the training
    progress line around them (a plain StreamHandler would write into the middle of it). It
    is a console StreamHandler, so a progress bar that redirects console logging itself
    (tqdm's ``logging_redirect_tqdm``) may replace it while the bar is drawn."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if _DRAWING:
                _DRAWING[-1].note(message)
            else:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class Reporter:
    def __init__(self, workdir: str, total_steps: int, start_step: int, batch_size: int,
                 enabled: bool = True, progress: bool = True):
        self.enabled = enabled
        self.batch_size = batch_size
        self._events = None
        self._failed = False
        if not enabled:
            self._bar = Progress(total=total_steps, enabled=False)
            return
        output.make_folders(workdir)
        self.workdir = workdir
        self._metrics_file = os.path.join(workdir, "metrics.jsonl")
        with self._writing():
            self._events = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self._bar = Progress(total=total_steps, desc="train", unit="steps", enabled=progress)
        self._bar.restart(start_step)
        self._timed_from = start_step  # the step after which rates are measured
        self._first_step = True
        if progress:
            _DRAWING.append(self)

    def step_done(self, step: int, loss: float) -> None:
        """Advance the progress line (step, loss, img/s, ETA)."""
        if not self.enabled:
            return
        if self._first_step:  # rates and ETA from the first finished step: compile excluded
            self._first_step = False
            self._bar.restart(step)
            self._timed_from = step
            return
        done = step - self._timed_from
        img_s = done * self.batch_size / max(self._bar.elapsed, 1e-9)
        self._bar.desc = f"train loss {loss:.4f} {img_s:.1f} img/s"
        self._bar.update()

    def scalars(self, step: int, split: str, values: Dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: (float(v) if not isinstance(v, (int, str)) else v)
                       for k, v in values.items()})
        numeric = {f"{split}/{k}": float(v) for k, v in values.items()
                   if isinstance(v, (int, float, np.floating, np.integer))}
        with self._writing():
            output.append_whole(self._metrics_file, (json.dumps(record) + "\n").encode())
            for tag, value in numeric.items():
                self._events.add_scalar(tag, value, int(step))
            self._events.flush()

    @contextlib.contextmanager
    def _writing(self):
        """Marks the reporter failed when a write fails (its first failure is the one the run
        reports: `close` then keeps quiet); tensorboardX's bare OSErrors (a full disk) become
        a WriteError naming its folder."""
        try:
            yield
        except output.WriteError:
            self._failed = True
            raise
        except OSError as err:
            self._failed = True
            raise output.write_error(os.path.join(self.workdir, "tensorboard"), err) from None

    def grid(self, step: int, images, pred, alpha, tag: str = "val_crop/grid") -> Optional[str]:
        if not self.enabled:
            return None
        grid = matte_grid(np.asarray(images), np.asarray(pred),
                          None if alpha is None else np.asarray(alpha))
        folder = os.path.join(self.workdir, "samples")
        path = os.path.join(folder, f"step_{int(step):07d}.png")
        with self._writing():
            output.make_folders(folder)
            output.write_image(path, grid[..., ::-1])
            self._events.add_image(tag, grid, int(step), dataformats="HWC")
            self._events.flush()
        return path

    def refresh(self) -> None:
        """Redraws the progress line now."""
        if self.enabled:
            self._bar.refresh()

    def note(self, message: str) -> None:
        if self.enabled:
            self._bar.note(message)

    def close(self) -> None:
        if not self.enabled:
            return
        if self in _DRAWING:
            _DRAWING.remove(self)
        self._bar.close()
        try:
            with contextlib.suppress(OSError) if self._failed else self._writing():
                self._events.close()
        finally:
            _abandon_unwritten(self._events)


def _abandon_unwritten(events: SummaryWriter) -> None:
    """After a close that could not write (a full disk), tensorboardX's exit handler would
    try again and print a traceback after the command's error line: its writers are marked
    closed (their unwritten records are lost; the values are in metrics.jsonl)."""
    for writer in (getattr(events, "all_writers", None) or {}).values():
        inner = getattr(writer, "event_writer", None)
        if inner is not None and hasattr(inner, "_closed"):
            inner._closed = True


def summary_lines(workdir: str, result: dict) -> list:
    """What ``python -m modnet_jax.train`` prints at the end of a run: how far it got, the
    validation before/after, and where its results are (checkpoints, curves, sample grids)
    with the commands that use them."""
    workdir = os.path.abspath(workdir)
    shown = os.path.relpath(workdir)  # shorter when the workdir is under the current folder
    if shown.startswith(os.pardir):
        shown = workdir
    before, after = result.get("val_crop_before"), result.get("val_crop_after")
    lines = [f"steps: {result['start_step']} -> {result['final_step']} of {result['total_steps']}"]
    if before:
        lines.append(f"val_crop before: MAD {before['mad']:.4f}  MSE {before['mse']:.4f}")
    if after:
        lines.append(f"val_crop after:  MAD {after['mad']:.4f}  MSE {after['mse']:.4f}")
    if before or after:
        lines.append("  (val_crop: validation centre crops at the training size)")
    if result.get("stopped_by"):
        lines.append(f"stopped by {result['stopped_by']}; rerun the same command to resume")
    lines += [f"checkpoints:  {os.path.join(shown, 'checkpoints')}",
              f"curves:       tensorboard --logdir {os.path.join(shown, 'tensorboard')}"
              f"  (and {os.path.join(shown, 'metrics.jsonl')})"]
    if os.path.isdir(os.path.join(workdir, "samples")):
        lines.append(f"sample grids: {os.path.join(shown, 'samples')}/step_*.png "
                     f"(input | predicted matte | truth)")
    lines += [f"next:         python -m modnet_jax.predict --checkpoint {shown} PHOTOS... "
              f"--output out/",
              f"              python -m modnet_jax.evaluate --checkpoint {shown} --data DIR "
              f"--layout LAYOUT"]
    return lines
