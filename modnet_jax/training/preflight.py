"""Every check a training run can make before it does any work, in one place.

``check_run(config, resuming)`` is called by ``python -m modnet_jax.train`` after the flags
and the workdir are checked and before anything is written: a mistake found here is a
``ConfigError`` (one line; the command exits with status 2 and leaves no workdir). It checks,
cheapest first:

* the run's own fields (``mode``, ``image_size``, the loss variant, the optimiser), the data
  config (an unknown layout, ``val_fraction``), the model (``jax.eval_shape`` of its
  initialisation: an unknown ``lr_branch`` or other bad model field, with no computation);
* the devices: ``num_devices`` available, ``batch_size`` (and ``eval_batch_size`` when the run
  validates) a positive multiple of the devices of every process;
* ``init_from`` on a fresh start: its kind (checkpoint folder, official ONNX, PyTorch
  ``state_dict``), loaded and fitted against the model's shapes, so a file that is not a
  MODNet is refused now rather than after the data are loaded; SOC without it;
* the data: each split scanned once (the scans are handed on to the loop), the training split
  holding at least one batch, the validation split not rounded to nothing and holding at
  least one ``eval_batch_size`` batch.

What passes is returned as a ``Checked`` (devices, split plans, the loaded ``init_from``
variables) for ``loop.train`` to use, so nothing is scanned or read twice.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Optional

MODES = ("supervised", "soc")


class ConfigError(ValueError):
    """A mistake found before any work: one line, exit status 2, nothing written."""


@dataclasses.dataclass
class Checked:
    devices: list
    train_plan: Any
    val_plan: Any  # None when the run does not validate
    init_variables: Optional[dict]  # init_from's variables (fresh starts with init_from only)


def validates(config) -> bool:
    """Whether the run has an in-training validation split."""
    return str(config.mode) == "supervised" and int(config.eval_every) >= 0


def _fields(config) -> None:
    from modnet_jax import state as state_lib
    from modnet_jax.data import resolve_config
    from modnet_jax.losses import LOSS_VARIANTS

    if str(config.mode) not in MODES:
        raise ConfigError(f"config.mode must be one of {MODES}, got {config.mode!r}")
    size = int(config.image_size)
    if size <= 0 or size % 32:
        raise ConfigError(f"config.image_size must be a positive multiple of 32, got {size}")
    if str(config.loss.variant) not in LOSS_VARIANTS:
        raise ConfigError(f"config.loss.variant must be one of {LOSS_VARIANTS}, "
                          f"got {config.loss.variant!r}")
    for name in ("batch_size", "eval_batch_size", "log_every", "checkpoint_every"):
        if int(config[name]) <= 0:
            raise ConfigError(f"config.{name} {config[name]}: must be > 0")
    try:
        state_lib.make_optimizer(config.optimizer, 1)
        resolve_config(config.data)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _model_shapes(config):
    """The model's variables as ShapeDtypeStructs (traces the model once, computes nothing)."""
    import jax
    import jax.numpy as jnp

    from modnet_jax.models import model_from_config

    try:
        model = model_from_config(config.model)
        x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
        return jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config.model: {str(err).splitlines()[0]}") from None


def _devices(config):
    import jax

    from modnet_jax import parallel

    n = int(config.num_devices)
    try:
        devices = parallel.local_devices(None if n < 0 else n)
    except ValueError as err:
        raise ConfigError(f"config.num_devices: {err}") from None
    n_global = len(devices) * jax.process_count()
    for name in ("batch_size", "eval_batch_size") if validates(config) else ("batch_size",):
        value = int(config[name])
        if value % n_global:
            lower, upper = value // n_global * n_global, (value // n_global + 1) * n_global
            raise ConfigError(
                f"config.{name} {value} does not divide over the {n_global} devices (it is the "
                f"global batch: per-device batch x devices); use "
                f"{' or '.join(str(v) for v in (lower, upper) if v > 0)}, or "
                f"--config.num_devices")
    return devices


def _init_from(config, shapes) -> Optional[dict]:
    from modnet_jax.training.pretrained import load_init_variables, merge_pretrained

    if not config.init_from:
        if str(config.mode) == "soc":
            raise ConfigError("SOC adapts a trained model: set --config.init_from to a training "
                              "workdir, a checkpoint or the released weights (.onnx, .pth)")
        return None
    try:
        loaded = load_init_variables(str(config.init_from))
        merge_pretrained(dict(shapes), loaded)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return loaded


def _split_counts(config, n_train: int, n_global: int) -> None:
    if n_train < int(config.batch_size):
        raise ConfigError(f"data[train] holds {n_train} samples, fewer than one batch "
                          f"(config.batch_size {config.batch_size}): lower --config.batch_size "
                          f"(a multiple of the device count, {n_global}) or add data")


def _val_plan(config, n_train: int, n_global: int):
    """The validation split's plan; ConfigError when it holds less than one eval batch."""
    from modnet_jax.data import DatasetError, scan_split

    data, eval_batch = config.data, int(config.eval_batch_size)
    held_out = data.val_root is None  # held out of the training data: val_fraction decides
    try:
        plan = scan_split(data, image_size=int(config.image_size), split="val")
        n_val = plan.summary.num_samples
    except DatasetError as err:
        if not held_out:
            raise ConfigError(str(err)) from None
        n_val = 0  # every usable sample is in the training split: the fraction rounded to 0
    if n_val >= eval_batch:
        return plan
    advice = (f"lower --config.eval_batch_size (a multiple of the device count, {n_global}), "
              f"--config.eval_every=-1 (no validation)")
    if not held_out:
        raise ConfigError(f"data[val] at {data.val_root} holds {n_val} samples, fewer than "
                          f"config.eval_batch_size {eval_batch}: {advice}, or add data")
    total, fraction = n_train + n_val, float(data.val_fraction)
    need = min(math.ceil((eval_batch - 0.5) / max(total, 1) * 1000) / 1000, 0.999)
    what = "rounds to no sample" if n_val == 0 else f"holds {n_val}"
    raise ConfigError(
        f"data[val]: {total} samples x val_fraction {fraction:g} {what} for validation, fewer "
        f"than config.eval_batch_size {eval_batch}: set --config.data.val_fraction={need:g} or "
        f"more, {advice}, or --config.data.val_root")


def check_run(config, resuming: bool) -> Checked:
    """Every check that needs no work (module docstring); ``ConfigError`` on a mistake.
    ``resuming``: the workdir has a checkpoint (then ``init_from`` is not read)."""
    import jax

    from modnet_jax.data import DatasetError, scan_split

    _fields(config)
    shapes = _model_shapes(config)
    devices = _devices(config)
    n_global = len(devices) * jax.process_count()
    init_variables = None if resuming else _init_from(config, shapes)
    split = "unlabelled" if str(config.mode) == "soc" else "train"
    data_log = logging.getLogger("modnet_jax.data")
    level = data_log.level
    data_log.setLevel(max(level, logging.WARNING))  # summaries once the checks have passed
    try:
        try:
            train_plan = scan_split(config.data, image_size=int(config.image_size), split=split)
        except (DatasetError, ValueError) as err:
            raise ConfigError(str(err)) from None
        _split_counts(config, train_plan.summary.num_samples, n_global)
        val_plan = None
        if validates(config):
            val_plan = _val_plan(config, train_plan.summary.num_samples, n_global)
    finally:
        data_log.setLevel(level)
    for plan in (train_plan, val_plan):
        if plan is not None:
            data_log.info("%s", plan.summary)
    return Checked(devices, train_plan, val_plan, init_variables)
