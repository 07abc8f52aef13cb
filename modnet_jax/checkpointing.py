"""Orbax checkpoints: one layout for training runs, model exports and conversions.

Layout (an Orbax ``CheckpointManager`` directory)::

    <dir>/<step>/state/   StandardSave of the model variables {"params", "batch_stats", "step"}
                          (exports), or of {"train": TrainState, ["frozen": SOC's M']} (runs)
    <dir>/<step>/data/    JsonSave of the Grain iterator state (training runs only):
                          {"per_process_states": [state of process 0, 1, ...]}

Several processes (``jax.distributed``): every process calls ``save`` with the same host
(numpy) train state; Orbax writes numpy leaves and JSON from the primary process only, with
barriers around each step, so the workdir must be on a filesystem all processes share (each
reads the checkpoint back on resume). Each process's own iterator state is first gathered to
all processes (``process_allgather``) and stored under its process index; ``restore`` hands
each process its own.

Every step also records the model's settings (``config.model``: ``lr_branch``,
``hr_channels``, ``easpp_rates``, ...) in Orbax's step metadata (``custom_metadata["model"]``
of ``<dir>/<step>/_CHECKPOINT_METADATA``), so commands that load a checkpoint rebuild the
right architecture without being told; ``model_metadata`` reads it (None for files written
before it existed or by other tools).

A training workdir keeps its manager directory in ``<workdir>/checkpoints``. Model-only
checkpoints (``convert_from_torch``, exports) use the same layout with only the model variables
in ``state``, so every command that takes ``--checkpoint`` accepts any of: a workdir, a manager
directory, or one step directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import threading
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from modnet_jax.imaging.signatures import describe, kind_of
from modnet_jax.models.build import MODEL_DEFAULTS

STATE_ITEM = "state"
DATA_ITEM = "data"
CHECKPOINT_SUBDIR = "checkpoints"
MODEL_KEY = "model"
# The model fields that change the parameter tree (the others change only the numerics).
ARCH_FIELDS = ("lr_branch", "hr_channels", "easpp_rates")


class DamagedCheckpoint(ValueError):
    """A checkpoint whose files cannot be read back (truncated, overwritten, half-deleted):
    one line that names the step directory and what Orbax / TensorStore found."""


# Orbax reads a checkpoint with many concurrent TensorStore reads on an event loop of its own,
# which it closes as soon as its coroutine ends. When one read fails, the others are still in
# flight; when they complete, TensorStore calls back into the closed loop and each callback
# prints a "RuntimeError: Event loop is closed" traceback (0 to ~20 per run, after the
# command's own error line). Loops made while Orbax runs are therefore ones whose `close`
# first lets their unfinished tasks end (bounded by _DRAIN_SECONDS), so no read outlives its
# loop.
_DRAIN_SECONDS = 60.0
_POLICY_LOCK = threading.RLock()


class _DrainingLoop(asyncio.SelectorEventLoop):
    def close(self) -> None:
        if not self.is_closed() and not self.is_running():
            pending = [task for task in asyncio.all_tasks(self) if not task.done()]
            if pending:
                self.run_until_complete(asyncio.wait(pending, timeout=_DRAIN_SECONDS))
                for task in pending:  # mark their errors as seen (they were, by Orbax)
                    if task.done() and not task.cancelled():
                        task.exception()
        super().close()


class _DrainingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _DrainingLoop()


@contextlib.contextmanager
def _loops_outlive_their_reads():
    """Orbax calls inside this block run on `_DrainingLoop`s (the process's policy is put
    back after it; a policy other than the default, e.g. uvloop's, is left alone)."""
    with _POLICY_LOCK:
        before = asyncio.get_event_loop_policy()
        if type(before) is not asyncio.DefaultEventLoopPolicy:
            yield
            return
        asyncio.set_event_loop_policy(_DrainingPolicy())
        try:
            yield
        finally:
            asyncio.set_event_loop_policy(before)


class _NoBackgroundTracebacks(logging.Filter):
    """Orbax logs a failed background save (a full disk) from each of its threads, with
    tracebacks, some after the command has ended, then raises the error where the save is
    waited for, and the command reports it (one line). Its background threads' error records
    are dropped (their error is that one); its other records keep one line, without the
    traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if f"{os.sep}orbax{os.sep}" not in (record.pathname or ""):
            return True
        if record.levelno >= logging.ERROR and record.threadName != "MainThread":
            return False
        record.exc_info, record.exc_text = None, None
        return True


_BACKGROUND_FILTER = _NoBackgroundTracebacks()


def _unwritable(directory: str, err: OSError):
    """The WriteError (``imaging.output``) for a checkpoint that cannot be written."""
    from modnet_jax.imaging.output import write_error

    return write_error(directory, err)


def _damaged(step_dir: str, err: BaseException) -> DamagedCheckpoint:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return DamagedCheckpoint(f"{step_dir}: damaged checkpoint, cannot be read "
                             f"({type(err).__name__}: {first})")


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def model_record(model_config: Any = None) -> dict:
    """The JSON-able model settings saved with a checkpoint: every field of
    ``MODEL_DEFAULTS``, from ``model_config`` (mapping / ConfigDict / None for the defaults)."""
    given = dict(model_config) if model_config is not None else {}
    return {k: _json_value(given.get(k, v)) for k, v in MODEL_DEFAULTS.items()}


def arch_differences(saved: dict, wanted: dict) -> list:
    """``["lr_branch 'se' -> 'easpp'", ...]`` for the architecture fields that differ."""
    out = []
    for key in ARCH_FIELDS:
        if key in saved and _json_value(saved[key]) != _json_value(wanted.get(key)):
            out.append(f"{key} {_json_value(saved[key])!r} -> {_json_value(wanted.get(key))!r}")
    return out


def model_metadata(path: str, step: Optional[int] = None) -> Optional[dict]:
    """The model settings saved with a checkpoint (see ``model_record``), or None when the
    checkpoint has none (older or foreign files). ``path`` as for ``resolve_checkpoint``."""
    step_dir = resolve_checkpoint(path, step)
    try:
        with _loops_outlive_their_reads():
            meta = ocp.metadata.get_step_metadata(step_dir)
    except (ValueError, OSError):
        return None
    record = (meta.custom_metadata or {}).get(MODEL_KEY)
    return dict(record) if isinstance(record, dict) else None


def _steps_in(directory: str) -> list:
    if not os.path.isdir(directory):
        return []
    steps = []
    for name in os.listdir(directory):
        full = os.path.join(directory, name)
        if name.isdigit() and os.path.isdir(os.path.join(full, STATE_ITEM)):
            steps.append(int(name))
    return sorted(steps)


def resolve_checkpoint(path: str, step: Optional[int] = None) -> str:
    """The step directory meant by ``path`` (workdir, manager dir or step dir) and ``step``.

    Without ``step`` the newest step is taken. Raises ``FileNotFoundError`` with a message that
    says what was looked for.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if os.path.isfile(path):  # say what it is, by content: an image, a ZIP, a JSON file...
        raise FileNotFoundError(f"{path} is a file, {describe(kind_of(path))}, not a "
                                f"modnet_jax checkpoint (a directory of Orbax steps)")
    if os.path.isdir(os.path.join(path, STATE_ITEM)):
        if step is not None and os.path.basename(path) != str(step):
            raise FileNotFoundError(f"{path} is the checkpoint of step {os.path.basename(path)}, "
                                    f"not of step {step}")
        return path
    for manager_dir in (path, os.path.join(path, CHECKPOINT_SUBDIR)):
        steps = _steps_in(manager_dir)
        if not steps:
            continue
        if step is None:
            return os.path.join(manager_dir, str(steps[-1]))
        if step not in steps:
            raise FileNotFoundError(f"no step {step} in {manager_dir} (steps there: {steps})")
        return os.path.join(manager_dir, str(step))
    raise FileNotFoundError(
        f"no modnet_jax checkpoint in {path}: expected a step directory holding '{STATE_ITEM}/', "
        f"a checkpoint manager directory of such steps, or a workdir with '{CHECKPOINT_SUBDIR}/'"
    )


def load_state_tree(path: str, step: Optional[int] = None) -> dict:
    """The raw saved ``state`` tree (nested dicts of arrays) of a checkpoint."""
    step_dir = resolve_checkpoint(path, step)
    try:
        with _loops_outlive_their_reads(), ocp.StandardCheckpointer() as ckptr:
            return ckptr.restore(os.path.join(step_dir, STATE_ITEM))
    except Exception as err:  # orbax / tensorstore / json errors of damaged files
        raise _damaged(step_dir, err) from err


def load_variables(path: str, step: Optional[int] = None) -> dict:
    """``{"params", "batch_stats"}`` of a checkpoint (training run or model-only export)."""
    tree = load_state_tree(path, step)
    if "train" in tree:  # a training run: {"train": TrainState fields, ["frozen": M']}
        tree = tree["train"]
    missing = [k for k in ("params", "batch_stats") if k not in tree]
    if missing:
        raise ValueError(f"checkpoint {resolve_checkpoint(path, step)} has no {missing} "
                         f"(found {sorted(tree)}); is it a modnet_jax checkpoint?")
    return {"params": tree["params"], "batch_stats": tree["batch_stats"]}


def model_config_for(path: str, step: Optional[int] = None, **given: Any) -> dict:
    """The architecture fields to rebuild the model of a checkpoint: the ones it records;
    ``given`` (command-line values, None = not given) fill in for a checkpoint without a
    record (foreign or older files), the defaults for the rest. A given value that
    contradicts the record raises ValueError (one line)."""
    recorded = model_metadata(path, step) or {}
    cfg = {k: _json_value(MODEL_DEFAULTS[k]) for k in ARCH_FIELDS}
    cfg.update({k: recorded[k] for k in ARCH_FIELDS if k in recorded})
    for key, value in given.items():
        if value is None:
            continue
        if key in recorded and _json_value(recorded[key]) != _json_value(value):
            raise ValueError(f"{path} records {key}={recorded[key]!r}, but "
                             f"--{key.replace('_', '-')} {value} was given (leave it out: the "
                             f"checkpoint knows its architecture)")
        cfg[key] = value
    return cfg


def save_variables(directory: str, variables: Any, step: int = 0,
                   model_config: Any = None) -> str:
    """Write a model-only checkpoint (params + batch_stats) as ``<directory>/<step>/state``,
    with the model settings ``model_config`` as metadata (None: none recorded; ``{}``: the
    defaults, i.e. the release architecture).

    Returns the step directory. The result loads with ``load_variables`` and can initialise
    training (``config.init_from``).
    """
    directory = os.path.abspath(os.path.expanduser(directory))
    tree = {
        "params": jax.tree_util.tree_map(np.asarray, variables["params"]),
        "batch_stats": jax.tree_util.tree_map(np.asarray, variables.get("batch_stats", {})),
        "step": np.asarray(step, np.int32),
    }
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False)
    try:
        with _loops_outlive_their_reads(), ocp.CheckpointManager(directory,
                                                                 options=options) as mgr:
            mgr.save(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(tree)}),
                     force=True, custom_metadata=({} if model_config is None else
                                                  {MODEL_KEY: model_record(model_config)}))
            mgr.wait_until_finished()
    except OSError as err:  # a full disk...: the OS's reason; Orbax's temporary folder removed
        for name in os.listdir(directory) if os.path.isdir(directory) else ():
            if name.startswith(f"{step}.") and "tmp" in name:
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        raise _unwritable(os.path.join(directory, str(step)), err) from None
    return os.path.join(directory, str(step))


PER_PROCESS = "per_process_states"


def _gather_json(value: Any) -> list:
    """``value`` (JSON-able) of every process, indexed by process, on every process."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    raw = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([raw.size], np.int32)))
    width = -(-int(sizes.max()) // 1024) * 1024  # round up: few distinct shapes to compile
    padded = np.zeros(width, np.uint8)
    padded[:raw.size] = raw
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [json.loads(rows[i, :int(sizes[i, 0])].tobytes()) for i in range(rows.shape[0])]


def _own_data_state(saved: dict) -> dict:
    """This process's iterator state from a saved data item (also reads the older
    single-state format). With a different process count the states can only be reused if
    they are all equal (they are, for our pipelines: positions count global batches)."""
    states = saved[PER_PROCESS] if PER_PROCESS in saved else [saved]
    if len(states) == jax.process_count():
        return states[jax.process_index()]
    if all(s == states[0] for s in states):
        return states[0]
    raise ValueError(f"the checkpoint's data-iterator states are from {len(states)} processes "
                     f"and differ; resume it with {len(states)} processes")


BEST_METRIC = "val_crop_mad"


def _best_metric(metrics: dict) -> float:
    return metrics[BEST_METRIC] if BEST_METRIC in metrics else metrics["val_mad"]


class TrainCheckpointer:
    """Training checkpoints: train state + data-iterator state in one Orbax step.

    Keeps the newest ``keep_last`` steps plus the ``keep_best`` steps with the lowest
    MAD on the validation crops (steps saved with ``val_crop_mad``; checkpoints written before
    the rename carry it as ``val_mad``); writes asynchronously (``wait`` blocks).
    ``save`` takes host (numpy) trees; every process calls it (Orbax coordinates the writes;
    the train state must be the same on all processes, the data state is each one's own).
    ``model_config`` (the run's ``config.model``) is recorded with every step.
    """

    def __init__(self, directory: str, keep_last: int = 3, keep_best: int = 1,
                 async_save: bool = True, model_config: Any = None):
        self._custom = {MODEL_KEY: model_record(model_config)}
        from orbax.checkpoint import checkpoint_managers as cm

        self.directory = os.path.abspath(os.path.expanduser(directory))
        policies = [cm.LatestN(max(int(keep_last), 1))]
        if keep_best > 0:
            policies.append(cm.BestN(get_metric_fn=_best_metric, reverse=True,
                                     n=int(keep_best), keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            create=True, enable_async_checkpointing=async_save,
            preservation_policy=cm.AnyPreservationPolicy(policies))
        logging.getLogger("absl").addFilter(_BACKGROUND_FILTER)  # once: filters are a set
        with _loops_outlive_their_reads():  # its background loop too (async saves)
            self._mgr = ocp.CheckpointManager(self.directory, options=options)

    @contextlib.contextmanager
    def _writing(self):
        """A save's OSError (a full disk; async saves raise it when waited for) as a
        WriteError naming the checkpoint folder."""
        try:
            yield
        except OSError as err:
            raise _unwritable(self.directory, err) from None

    def latest_step(self) -> Optional[int]:
        return self._mgr.latest_step()

    def save(self, step: int, state_tree: Any, data_state: Optional[dict] = None,
             val_crop_mad: Optional[float] = None) -> None:
        items = {STATE_ITEM: ocp.args.StandardSave(state_tree)}
        if data_state is not None:
            items[DATA_ITEM] = ocp.args.JsonSave({PER_PROCESS: _gather_json(data_state)})
        metrics = None if val_crop_mad is None else {BEST_METRIC: float(val_crop_mad)}
        with self._writing():
            self._mgr.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True,
                           custom_metadata=self._custom)

    def restore(self, step: int, state_target: Any, with_data: bool = True):
        """(state tree shaped like ``state_target``, data-iterator state or None).
        ``DamagedCheckpoint`` (one line, naming the step and what to do) when its files
        cannot be read back."""
        items = {STATE_ITEM: ocp.args.StandardRestore(state_target)}
        if with_data:
            items[DATA_ITEM] = ocp.args.JsonRestore()
        try:
            with _loops_outlive_their_reads():
                restored = self._mgr.restore(step, args=ocp.args.Composite(**items))
        except Exception as err:  # orbax / tensorstore / json errors of damaged files
            older = [s for s in self._mgr.all_steps() if s < step]
            damaged = _damaged(os.path.join(self.directory, str(step)), err)
            raise DamagedCheckpoint(f"{damaged}; move it away to resume from "
                                    + (f"step {max(older)}" if older else "the start")) from None
        return restored[STATE_ITEM], (_own_data_state(restored[DATA_ITEM]) if with_data
                                      else None)

    def wait(self) -> None:
        with self._writing():
            self._mgr.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        except BaseException:  # the save's error is the one reported, not the close's
            with contextlib.suppress(Exception):
                self._mgr.close()
            raise
        with self._writing():
            self._mgr.close()
