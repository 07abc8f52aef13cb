"""The training loop: supervised MODNet training and SOC adaptation (``config.mode``).

``train(config, workdir)`` does, in order: every check that needs no work
(``preflight.py``: config, devices, ``init_from``, the dataset and its splits), save
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
poisoned state (the last good checkpoint stays).

Host <-> device traffic: the loop never moves data implicitly (it runs under
``jax.transfer_guard("disallow")``, tested). Per step, the batch goes in with one explicit
put (only the entries the step reads: ``fg``/``bg`` for the paper loss only; with
``data.augment_on_device`` the uint8 crops and the draws, made into samples inside the
step by ``modnet_jax.device_augment``) and the previous
step's metrics come out with one explicit get, so the host never waits for the step it just
dispatched; evaluation reads its metrics once per pass; checkpoints copy the state out. The
one-off set-up (model init, restore, first copy to the devices) is not policed.

Names: the in-training validation runs on the validation split's centre crops at the training
size (``val_crop/...`` in the logs, ``val_crop_mad`` for the best checkpoint); full-resolution
evaluation is ``modnet_jax.evaluate``. Logged training metrics are means over the logging
interval.
"""

from __future__ import annotations

import logging
import os
import signal
import zlib
from typing import Any, Dict, Optional

import jax
import numpy as np

from modnet_jax import checkpointing, parallel, steps
from modnet_jax import state as state_lib
from modnet_jax.data import (
    make_eval_iterator,
    make_train_iterator,
    make_unlabelled_iterator,
    resolve_config,
)
from modnet_jax.device_augment import DeviceRecipe
from modnet_jax.models import init_variables, model_from_config
from modnet_jax.training import preflight
from modnet_jax.training.pretrained import load_init_variables, merge_pretrained
from modnet_jax.training import soc_recipes, soc_report
from modnet_jax.training.reporting import Reporter
from modnet_jax.training.run_config import has_checkpoint, save_run_config

LOGGER = logging.getLogger(__name__)
VAL_SPLIT = "val_crop"  # the in-training validation's name in logs and results


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
    """A cheap digest of the batch's images (the crops and draws on the device path),
    logged so resumed runs can prove same data (with several hosts: of the chief's rows of
    the global batch)."""
    if "image" in batch:
        return zlib.crc32(np.ascontiguousarray(batch["image"][:, ::8, ::8]).tobytes())
    digest = zlib.crc32(np.ascontiguousarray(batch["crop"][:, ::8, ::8]).tobytes())
    return zlib.crc32(np.ascontiguousarray(batch["draws"]).tobytes(), digest)


def _plan_steps(config, num_samples: int):
    spe = int(config.steps_per_epoch)
    if spe <= 0:
        spe = max(num_samples // int(config.batch_size), 1)
    total = int(config.num_train_steps)
    if total <= 0:
        total = int(config.num_epochs) * spe
    return spe, total


class Replica:
    """What lives on the devices during a run: the train state, SOC's frozen copy M' (with
    its host copy, which checkpoints store), and the compiled steps that use them."""

    def __init__(self, model, state, frozen: Optional[dict], devices, config, do_eval: bool,
                 device_recipe=None):
        self.devices = devices
        self.mode = str(config.mode)
        self.state = parallel.put_state(state, devices)
        self.frozen_host, self.frozen = None, None
        if self.mode == "soc":
            self._keys = steps.soc_keys(device_recipe)
            self._step = steps.build_soc_step(model, devices, device_recipe)
            self.set_frozen(frozen)
        else:
            variant = str(config.loss.variant)
            self._keys = steps.supervised_keys(variant, device_recipe)
            self._step = steps.build_supervised_step(model, devices, variant, device_recipe)
        self._eval = steps.build_eval_step(model, devices) if do_eval else None

    def set_frozen(self, frozen: dict) -> None:
        """M' := ``frozen`` (a host tree of model variables)."""
        self.frozen_host = frozen
        self.frozen = parallel.put_state(frozen, self.devices)

    def refresh_frozen(self) -> None:
        """M' := the current model (the release re-copies it at each epoch start)."""
        self.set_frozen(parallel.get_state(self.state.variables))

    def train_step(self, batch: Dict[str, np.ndarray]):
        """One update on a host batch; returns the step's metrics, still on the devices."""
        batch = parallel.put_batch(steps.select(batch, self._keys), self.devices)
        if self.mode == "soc":
            self.state, metrics = self._step(self.state, self.frozen, batch)
        else:
            self.state, metrics = self._step(self.state, batch)
        return metrics

    def eval_step(self, batch: Dict[str, np.ndarray]):
        """(matte, metrics) on the devices for a host validation batch."""
        batch = parallel.put_batch(steps.select(batch, steps.EVAL_KEYS), self.devices)
        return self._eval(self.state.variables, batch)

    def checkpoint_tree(self) -> dict:
        tree = {"train": parallel.get_state(self.state)}
        if self.frozen_host is not None:
            tree["frozen"] = self.frozen_host
        return tree


class MetricLog:
    """Training metrics, read one step late and logged as means over each logging interval.

    ``push`` queues a step's metrics (still on the devices) and reads the previously queued
    ones; ``flush`` reads the queued ones now (before a checkpoint, an evaluation, the end).
    Each read checks the loss, advances the progress line and adds to the interval's sums;
    at a logging step (every ``log_every`` steps and the last) the means since the previous
    logging step are written, with the learning rate and data fingerprint of that step.
    """

    def __init__(self, reporter: Reporter, log_every: int, total_steps: int, lr_schedule,
                 checkpointer):
        self.reporter, self.log_every, self.total_steps = reporter, log_every, total_steps
        self.checkpointer = checkpointer
        self._lr = jax.jit(lr_schedule)
        self._pending = None  # (step, metrics on the devices, data fingerprint)
        self._sums: Dict[str, float] = {}
        self._count = 0
        self.last: Optional[Dict[str, Any]] = None  # the last logged record

    def push(self, step: int, metrics, fingerprint: int) -> None:
        self.flush()
        self._pending = (step, metrics, fingerprint)

    def flush(self) -> None:
        if self._pending is None:
            return
        step, metrics, fingerprint = self._pending
        self._pending = None
        values = {k: float(v) for k, v in parallel.get_state(metrics).items()}
        if not np.isfinite(values["total"]):
            raise NonFiniteLossError(
                f"non-finite loss ({values['total']}) at step {step}; stopping without "
                f"checkpointing this state (last good checkpoint: step "
                f"{self.checkpointer.latest_step()}, in {self.checkpointer.directory})")
        self.reporter.step_done(step, values["total"])
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        if step % self.log_every == 0 or step == self.total_steps:
            record = {k: v / self._count for k, v in self._sums.items()}
            record["lr"] = float(jax.device_get(self._lr(jax.device_put(np.int32(step - 1)))))
            record["data_fingerprint"] = fingerprint
            self.reporter.scalars(step, "train", record)
            self.last = record
            self._sums, self._count = {}, 0


def evaluate_crops(replica: Replica, config, val_plan, reporter: Reporter, step: int):
    """Mean MSE/MAD over the validation split's centre crops at the training size (one
    pass); logs them as ``val_crop/*`` with a sample grid. Returns the means."""
    it = make_eval_iterator(config.data, batch_size=int(config.eval_batch_size) //
                            jax.process_count(), image_size=int(config.image_size),
                            shard_index=jax.process_index(), shard_count=jax.process_count(),
                            plan=val_plan)
    per_batch = []
    for i, batch in enumerate(it):
        if 0 <= int(config.num_eval_batches) <= i:
            break
        matte, metrics = replica.eval_step(batch)
        per_batch.append(metrics)  # read all at once below: no wait per batch
        if i == 0 and reporter.enabled:
            k = min(int(config.grid_images), batch["image"].shape[0])
            pred = parallel.get_rows(matte)
            reporter.grid(step, batch["image"][:k], pred[:k], batch["alpha"][:k])
    per_batch = parallel.get_state(per_batch)
    means = {k: sum(float(m[k]) for m in per_batch) / max(len(per_batch), 1)
             for k in ("mse", "mad")}
    reporter.scalars(step, VAL_SPLIT, means)
    return means


def _recalibrate(config, variables, batch_size: int, size: int, seed: int, mode: str):
    """Prepare released weights before the first step: re-estimate every BatchNorm on
    training batches, eval function unchanged (a released / ONNX model's train mode is
    otherwise far from its eval mode; training/recalibrate.py), then, with
    ``fit_heads_steps``, distil the training-only heads the ONNX export lacks
    (training/heads.py). Every host draws the same batches (shard 0 of 1), so the variables
    stay identical."""
    from modnet_jax.training.heads import fit_training_heads
    from modnet_jax.training.recalibrate import recalibrate_batchnorm

    make_iter = make_unlabelled_iterator if mode == "soc" else make_train_iterator
    host_made = dict(resolve_config(config.data).to_dict(), augment_on_device=False)  # finished images here
    it = make_iter(host_made, batch_size=batch_size, seed=seed + 7919, image_size=size)

    def draw(n):
        return [np.asarray(steps.normalize_image(np.asarray(next(it)["image"])))
                for _ in range(n)]

    model = model_from_config(config.model)
    n = int(config.recalibrate_batches)
    variables, report = recalibrate_batchnorm(model, variables, draw(n))
    LOGGER.info("re-estimated %d BatchNorms on %d batches of %d (eval function unchanged; "
                "largest mean shift %.1f old std)", report["batchnorms"], n, batch_size,
                report["max_mean_shift_in_old_std"])
    n = int(config.get("fit_heads_steps", 0))
    if n > 0:
        variables, losses = fit_training_heads(model, variables, draw(n))
        LOGGER.info("distilled the semantic/detail heads from the matte in %d steps: loss "
                    "%.4f -> %.4f", n, losses[0], losses[-1])
    return variables


def train(config, workdir: str, checked: Optional[preflight.Checked] = None) -> Dict[str, Any]:
    """Train (or adapt) until ``total_steps``; returns a summary dict (also logged).
    ``checked``: ``preflight.check_run``'s result (run here when not given; its
    ``ConfigError`` is a ``ValueError``)."""
    if checked is None:
        checked = preflight.check_run(config, resuming=has_checkpoint(workdir))
    mode = str(config.mode)
    chief = jax.process_index() == 0
    devices = checked.devices
    n_hosts = jax.process_count()
    do_eval = preflight.validates(config)
    per_host = int(config.batch_size) // n_hosts
    size, seed = int(config.image_size), int(config.seed)

    # Data first, each split scanned once (by the preflight): an empty or unusable dataset
    # stopped there, before anything compiles; the iterators and evaluations reuse the scans.
    train_plan, val_plan = checked.train_plan, checked.val_plan
    if chief:
        save_run_config(workdir, config)
    parallel.connect(devices)  # several processes: all here, device collectives connected
    make_iter = make_unlabelled_iterator if mode == "soc" else make_train_iterator
    train_iter = make_iter(config.data, batch_size=per_host, seed=seed, image_size=size,
                           shard_index=jax.process_index(), shard_count=n_hosts, plan=train_plan)
    steps_per_epoch, total_steps = _plan_steps(config, train_plan.summary.num_samples)

    model = model_from_config(config.model, axis_name=parallel.AXIS)
    with jax.transfer_guard("allow"):  # one-off set-up: init, restore, first copy in
        ckpt = checkpointing.TrainCheckpointer(
            os.path.join(workdir, checkpointing.CHECKPOINT_SUBDIR),
            int(config.keep_checkpoints), int(config.keep_best), bool(config.async_checkpoint),
            model_config=config.model)
        # released weights are prepared (BatchNorm re-estimation, heads) on a fresh start only
        prepare = (per_host, size) if (ckpt.latest_step() is None and
                                       int(config.get("recalibrate_batches", 0)) > 0) else None
        state, frozen = _fresh_state(config, model, steps_per_epoch, prepare,
                                     checked.init_variables)
        state, frozen = _resume(ckpt, state, frozen, train_iter)
        device_recipe = (DeviceRecipe.from_options(train_plan.options)
                         if train_plan.options.device else None)
        replica = Replica(model, state, frozen, devices, config, do_eval, device_recipe)
    start = int(state.step)
    del state, frozen

    reporter = Reporter(workdir, total_steps, start, int(config.batch_size), enabled=chief,
                        progress=bool(config.progress))
    log = MetricLog(reporter, int(config.log_every), total_steps,
                    state_lib.learning_rate_schedule(config.optimizer, steps_per_epoch), ckpt)
    result = {"start_step": start, "total_steps": total_steps, "stopped_by": None}
    if do_eval and start == 0 and bool(config.eval_at_start):
        result["val_crop_before"] = evaluate_crops(replica, config, val_plan, reporter, 0)

    def save(step, val_crop_mad=None):
        log.flush()
        ckpt.save(step, replica.checkpoint_tree(), train_iter.get_state(), val_crop_mad)
        result["last_saved"] = step

    refresh = mode == "soc" and bool(config.soc.refresh_frozen_every_epoch)
    soc_check = soc_report.start(config, model, replica.frozen_host) if mode == "soc" else None
    with _StopFlag() as stop:
        step = start
        try:
            while step < total_steps:
                if refresh and step > start and step % steps_per_epoch == 0:
                    replica.refresh_frozen()
                batch = next(train_iter)
                metrics = replica.train_step(batch)
                step += 1
                log.push(step, metrics, _fingerprint(batch))
                val = None
                if do_eval and ((int(config.eval_every) > 0 and step % int(config.eval_every) == 0)
                                or step == total_steps):
                    log.flush()
                    val = evaluate_crops(replica, config, val_plan, reporter, step)
                    result["val_crop_after"] = val
                if (step % int(config.checkpoint_every) == 0 or step == total_steps
                        or val is not None):
                    save(step, None if val is None else val["mad"])
                if stop.should_stop(step) and step < total_steps:
                    if result.get("last_saved") != step:
                        save(step)
                    reporter.note(f"{stop.signal}: checkpoint written at step {step}; exiting")
                    result["stopped_by"] = stop.signal
                    break
            log.flush()
        finally:
            ckpt.close()
            reporter.close()
    result["last_train"] = log.last
    result["final_step"] = step
    result["final_state"] = parallel.get_state(replica.state)
    if soc_check is not None:  # held-out SOC loss / flicker before and after, with a verdict
        result["soc_report"] = soc_report.finish(soc_check, result["final_state"].variables)
    return result


def _fresh_state(config, model, steps_per_epoch: int, prepare=None, loaded=None):
    """(host train state at step 0, host frozen M' for SOC or None): the release init, or
    ``init_from`` (``loaded``: its variables, read by the preflight); with ``prepare`` =
    (per-host batch, image size), ``_recalibrate`` then."""
    mode = str(config.mode)
    variables = init_variables(model_from_config(config.model), jax.random.key(int(config.seed)))
    if config.init_from:
        if loaded is None:
            loaded = load_init_variables(config.init_from)
        variables, report = merge_pretrained(variables, loaded)
        LOGGER.info("initialised from %s: %s", config.init_from, report)
    if prepare is not None:
        variables = _recalibrate(config, variables, *prepare, int(config.seed), mode)
    tx = state_lib.make_optimizer(config.optimizer, steps_per_epoch)
    if mode == "soc":  # what adapts (soc.adapt): every parameter, or a documented subset
        tx = soc_recipes.restrict(tx, str(config.soc.get("adapt", "all")))
    state = jax.device_get(state_lib.create_train_state(model, variables, tx))
    return state, (jax.device_get(state.variables) if mode == "soc" else None)


def _resume(ckpt, state, frozen, train_iter):
    """(state, frozen) from the run's newest checkpoint, which also positions
    ``train_iter``; unchanged when there is none."""
    start = ckpt.latest_step()
    if start is None:
        return state, frozen
    target = {"train": state}
    if frozen is not None:
        target["frozen"] = frozen
    restored, data_state = ckpt.restore(start, target)
    train_iter.set_state(data_state)
    LOGGER.info("resumed from %s at step %d", ckpt.directory, start)
    return restored["train"], restored.get("frozen")
