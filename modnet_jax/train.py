"""Train MODNet (supervised) or adapt it with SOC.

  python -m modnet_jax.train --config configs/supervised.py:quick
  python -m modnet_jax.train --config configs/supervised.py --workdir runs/d646 \
      --config.data.layout=adobe --config.data.root=/data/D646 --config.data.bg_root=/data/bg
  python -m modnet_jax.train --config configs/soc.py --config.init_from=runs/d646 \
      --config.data.root=/data/webcam_frames

Any config field can be overridden with ``--config.FIELD=VALUE`` (see the config file's and
``modnet_jax/training/config.py``'s docstrings). A run resumes automatically from the newest
checkpoint in its workdir. The workdir (default ``./workdir/<config name>``) receives
``checkpoints/``, ``metrics.jsonl``, ``tensorboard/`` and ``samples/*.png``.
Multi-host: ``--distributed`` calls ``jax.distributed.initialize()`` (TPU VMs and SLURM need
no more; elsewhere add ``--coordinator``, ``--num_processes``, ``--process_id``). The
scripts in ``launch/`` do this for TPU pods, SLURM, one multi-GPU node and local CPU processes.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a variant: configs/supervised.py:quick.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Run directory (checkpoints, logs). Default: ./workdir/<config>.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Initialise jax.distributed (multi-host runs).")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-host).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "Devices this process drives (multi-host GPU). Under SLURM JAX "
    "defaults to one GPU per task (SLURM_LOCALID); with one task per node list them all: 0,1,..")
flags.mark_flags_as_required(["config"])


def default_workdir(config_spec: str) -> str:
    """./workdir/<file stem>[_<variant>] for ``configs/supervised.py:quick``."""
    path, _, variant = config_spec.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("workdir", stem + (f"_{variant}" if variant else ""))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Orbax narrates every save through absl's logger; keep its warnings, drop the chatter.
    logging.getLogger("absl").setLevel(logging.WARNING)
    from modnet_jax.training import xla_cpu

    # Before anything starts JAX's backends (jax.distributed.initialize does not).
    xla_cpu.prefer_xla_kernels(not bool(_CONFIG.value.get("xla_cpu_ynnpack", False)))
    import jax

    if _DISTRIBUTED.value or _COORDINATOR.value:
        device_ids = _LOCAL_DEVICE_IDS.value
        try:
            jax.distributed.initialize(
                coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                process_id=_PROCESS_ID.value,
                local_device_ids=None if device_ids is None else [int(i) for i in device_ids])
        except ValueError as err:  # nothing to detect the cluster from, or bad flags
            print(f"error: jax.distributed.initialize: {err} (outside TPU VMs and SLURM give "
                  f"--coordinator, --num_processes and --process_id)", file=sys.stderr)
            sys.exit(1)
    from modnet_jax.data import DatasetError
    from modnet_jax.training.loop import NonFiniteLossError, train

    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    if jax.process_index() != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        result = train(_CONFIG.value, workdir)
    except (DatasetError, NonFiniteLossError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    if jax.process_index() == 0:
        before, after = result.get("val_crop_before"), result.get("val_crop_after")
        lines = [f"workdir: {os.path.abspath(workdir)}",
                 f"steps: {result['start_step']} -> {result['final_step']} "
                 f"of {result['total_steps']}"]
        if before:
            lines.append(f"val_crop before: MAD {before['mad']:.4f}  MSE {before['mse']:.4f}")
        if after:
            lines.append(f"val_crop after:  MAD {after['mad']:.4f}  MSE {after['mse']:.4f}")
        if before or after:
            lines.append("(val_crop: validation centre crops at the training size; "
                         "full-resolution metrics: python -m modnet_jax.evaluate)")
        if result["stopped_by"]:
            lines.append(f"stopped by {result['stopped_by']}; rerun the same command to resume")
        print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
