"""The training loop: supervised MODNet training and SOC adaptation (``config.mode``).

``train(config, workdir)`` does, in order: validate the dataset (before any compile), save
the resolved config as ``<workdir>/config.json`` (``run_config.py``), build
the model, optimiser and state (optionally initialised from ``config.init_from``), resume from
``<workdir>/checkpoints`` if a checkpoint exists, then run the device-parallel step until
``total_steps``, with periodic validation, checkpoints (train state + data-iterator state in
one Orbax step) and logs.

Exactness: nothing random happens outside the data pipeline, whose stream is a function of
the seed and the position saved with each checkpoint, so a run killed at any point and
resumed ends bit-identical to an uninterrupted one (tested).

Failure handling: SIGTERM/SIGINT finish the current step, write a checkpoint and return; a
non-finite loss raises ``NonFiniteLossError`` naming the step, without checkpointing the
poisoned state (the last good checkpoint stays). Step metrics are read one step late so the
host never waits for the device in the hot loop.
"""

from __future__ import annotations

import logging
import os
import signal
import zlib
from typing import Any, Dict

import jax
import numpy as np

from modnet_jax import checkpointing, parallel, steps
from modnet_jax import state as state_lib
from modnet_jax.data import (
    make_eval_iterator,
    make_train_iterator,
    make_unlabelled_iterator,
    validate_dataset,
)
from modnet_jax.models import init_variables, model_from_config
from modnet_jax.training.pretrained import load_init_variables, merge_pretrained
from modnet_jax.training.reporting import Reporter
from modnet_jax.training.run_config import save_run_config

LOGGER = logging.getLogger(__name__)
MODES = ("supervised", "soc")


class NonFiniteLossError(RuntimeError):
    pass


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop checkpoints and returns at the next step boundary.

    With several processes all must stop (and checkpoint, collectively) at the same step, so
    no handler is installed: SIGTERM is left to JAX's preemption service (set up by
    ``jax.distributed.initialize``), which agrees on a step with every process, and
    ``should_stop`` asks it at each step; SIGINT keeps its default.
    """

    def __init__(self):
        self.signal = None
        self._previous = {}
        self._multi = jax.process_count() > 1

    def should_stop(self, step: int) -> bool:
        """Call at every step boundary (on every process)."""
        if self._multi and self.signal is None:
            from jax.experimental import multihost_utils

            try:
                if multihost_utils.reached_preemption_sync_point(step):
                    self.signal = "SIGTERM"
            except RuntimeError as err:  # preemption service disabled
                LOGGER.warning("no coordinated stop on SIGTERM: %s", err)
                self._multi = False
        return self.signal is not None

    def __enter__(self):
        if self._multi:
            return self
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _fingerprint(batch: Dict[str, np.ndarray]) -> int:
    """A cheap digest of the batch's images, logged so resumed runs can prove same data
    (with several hosts: of the chief's rows of the global batch)."""
    return zlib.crc32(np.ascontiguousarray(batch["image"][:, ::8, ::8]).tobytes())


def _host_tree(tree):
    return jax.device_get(parallel.unreplicate(tree))


def _plan_steps(config, num_samples: int):
    spe = int(config.steps_per_epoch)
    if spe <= 0:
        spe = max(num_samples // int(config.batch_size), 1)
    total = int(config.num_train_steps)
    if total <= 0:
        total = int(config.num_epochs) * spe
    return spe, total


def evaluate(eval_step, variables_rep, config, devices, reporter: Reporter, step: int):
    """Mean MSE/MAD over the validation split; logs them and a sample grid. Returns the means."""
    it = make_eval_iterator(config.data, batch_size=int(config.eval_batch_size) //
                            jax.process_count(), image_size=int(config.image_size),
                            shard_index=jax.process_index(), shard_count=jax.process_count())
    sums, n = {"mse": 0.0, "mad": 0.0}, 0
    for i, batch in enumerate(it):
        if 0 <= int(config.num_eval_batches) <= i:
            break
        matte, metrics = eval_step(variables_rep, parallel.shard_batch(batch, devices))
        metrics = jax.device_get(parallel.unreplicate(metrics))
        for k in sums:
            sums[k] += float(metrics[k])
        n += 1
        if i == 0 and reporter.enabled:
            k = min(int(config.grid_images), batch["image"].shape[0])
            pred = parallel.host_local(matte)
            pred = pred.reshape((-1,) + pred.shape[2:])
            reporter.grid(step, batch["image"][:k], pred[:k], batch["alpha"][:k])
    means = {k: v / max(n, 1) for k, v in sums.items()}
    reporter.scalars(step, "val", means)
    return means


def train(config, workdir: str) -> Dict[str, Any]:
    """Train (or adapt) until ``total_steps``; returns a summary dict (also logged)."""
    mode = str(config.mode)
    if mode not in MODES:
        raise ValueError(f"config.mode must be one of {MODES}, got {mode!r}")
    chief = jax.process_index() == 0
    devices = parallel.local_devices(None if int(config.num_devices) < 0
                                     else int(config.num_devices))
    n_hosts, n_global = jax.process_count(), len(devices) * jax.process_count()
    do_eval = mode == "supervised" and int(config.eval_every) >= 0
    for name in ("batch_size", "eval_batch_size") if do_eval else ("batch_size",):
        value = int(config[name])
        if value < n_global or value % n_global:
            raise ValueError(f"{name} {value} must be a positive multiple of the {n_global} "
                             f"devices (global batch = per-device batch x devices)")
    per_host = int(config.batch_size) // n_hosts
    size, seed = int(config.image_size), int(config.seed)

    # Data first: an empty or unusable dataset stops here, before anything compiles.
    split = "unlabelled" if mode == "soc" else "train"
    summary = validate_dataset(config.data, image_size=size, split=split)  # logs its summary
    if do_eval:
        validate_dataset(config.data, image_size=size, split="val")
    if chief:
        save_run_config(workdir, config)
    parallel.connect(devices)  # several processes: all here, device collectives connected
    make_iter = make_unlabelled_iterator if mode == "soc" else make_train_iterator
    train_iter = make_iter(config.data, batch_size=per_host, seed=seed, image_size=size,
                           shard_index=jax.process_index(), shard_count=n_hosts)
    steps_per_epoch, total_steps = _plan_steps(config, summary.num_samples)

    model = model_from_config(config.model, axis_name=parallel.AXIS)
    variables = init_variables(model_from_config(config.model), jax.random.key(seed))
    if config.init_from:
        variables, report = merge_pretrained(variables, load_init_variables(config.init_from))
        LOGGER.info("initialised from %s: %s", config.init_from, report)
    elif mode == "soc":
        raise ValueError("SOC adapts a trained model: set config.init_from to a supervised "
                         "workdir/checkpoint or a converted official checkpoint")
    tx = state_lib.make_optimizer(config.optimizer, steps_per_epoch)
    state = state_lib.create_train_state(model, variables, tx)
    frozen = jax.device_get(state.variables) if mode == "soc" else None

    ckpt = checkpointing.TrainCheckpointer(
        os.path.join(workdir, checkpointing.CHECKPOINT_SUBDIR), int(config.keep_checkpoints),
        int(config.keep_best), bool(config.async_checkpoint), model_config=config.model)
    start = ckpt.latest_step()
    if start is not None:
        target = {"train": jax.device_get(state)}
        if frozen is not None:
            target["frozen"] = frozen
        restored, data_state = ckpt.restore(start, target)
        state, frozen = restored["train"], restored.get("frozen")
        train_iter.set_state(data_state)
        LOGGER.info("resumed from %s at step %d", ckpt.directory, start)
    start = int(state.step)

    reporter = Reporter(workdir, total_steps, start, int(config.batch_size), enabled=chief,
                        progress=bool(config.progress))
    rep_state = parallel.replicate(state, devices)
    del state
    rep_frozen = parallel.replicate(frozen, devices) if frozen is not None else None
    if mode == "soc":
        soc_step = steps.build_soc_step(model, devices)
        train_step = lambda s, b: soc_step(s, rep_frozen, b)  # noqa: E731
    else:
        train_step = steps.build_supervised_step(model, devices, str(config.loss.variant))
    eval_step = steps.build_eval_step(model, devices) if do_eval else None

    def run_eval(step):
        return evaluate(eval_step, rep_state.variables, config, devices, reporter, step)

    result = {"start_step": start, "total_steps": total_steps, "stopped_by": None}
    if do_eval and start == 0 and bool(config.eval_at_start):
        result["val_before"] = run_eval(0)

    pending = None  # (step, metrics on device, data fingerprint): read one step late

    def flush():
        nonlocal pending
        if pending is None:
            return
        step, metrics, fp = pending
        pending = None
        metrics = {k: float(v) for k, v in jax.device_get(parallel.unreplicate(metrics)).items()}
        if not np.isfinite(metrics["total"]):
            raise NonFiniteLossError(
                f"non-finite loss ({metrics['total']}) at step {step}; stopping without "
                f"checkpointing this state (last good checkpoint: step {ckpt.latest_step()}, "
                f"in {ckpt.directory})")
        reporter.step_done(step, metrics["total"])
        if step % int(config.log_every) == 0 or step == total_steps:
            metrics["lr"] = float(tx_schedule(step - 1))
            metrics["data_fingerprint"] = fp
            reporter.scalars(step, "train", metrics)
        result["last_train"] = metrics

    tx_schedule = state_lib.learning_rate_schedule(config.optimizer, steps_per_epoch)

    def save(step, val_mad=None):
        flush()
        tree = {"train": _host_tree(rep_state)}
        if rep_frozen is not None:
            tree["frozen"] = frozen
        ckpt.save(step, tree, train_iter.get_state(), val_mad)
        result["last_saved"] = step

    with _StopFlag() as stop:
        step = start
        try:
            while step < total_steps:
                if (mode == "soc" and bool(config.soc.refresh_frozen_every_epoch)
                        and step > start and step % steps_per_epoch == 0):
                    frozen = _host_tree(rep_state.variables)  # the release re-copies M' per epoch
                    rep_frozen = parallel.replicate(frozen, devices)
                batch = next(train_iter)
                fp = _fingerprint(batch)
                rep_state, metrics = train_step(rep_state, parallel.shard_batch(batch, devices))
                step += 1
                flush()
                pending = (step, metrics, fp)
                val = None
                if do_eval and ((int(config.eval_every) > 0 and step % int(config.eval_every) == 0)
                                or step == total_steps):
                    flush()
                    val = run_eval(step)
                    result["val_after"] = val
                if (step % int(config.checkpoint_every) == 0 or step == total_steps
                        or val is not None):
                    save(step, None if val is None else val["mad"])
                if stop.should_stop(step) and step < total_steps:
                    if result.get("last_saved") != step:
                        save(step)
                    reporter.note(f"{stop.signal}: checkpoint written at step {step}; exiting")
                    result["stopped_by"] = stop.signal
                    break
            flush()
        finally:
            ckpt.close()
            reporter.close()
    result["final_step"] = step
    result["final_state"] = _host_tree(rep_state)
    return result
