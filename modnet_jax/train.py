"""Train MODNet, fine-tune the released weights, or adapt a model to your footage with SOC.

  python -m modnet_jax.train --config supervised:quick
  python -m modnet_jax.train --config finetune:cpu --workdir runs/ft \\
      --config.init_from=modnet_photographic_portrait_matting.onnx --config.data.root=my_portraits
  python -m modnet_jax.train --config soc --workdir runs/soc --config.init_from=runs/ft \\
      --config.data.root=my_clips

configs (--config NAME[:VARIANT], or a config file of your own):
  supervised      the release recipe; :quick (the first run), :cpu, :tiny
  finetune        released weights (.onnx/.pth/checkpoint) on your photos + mattes; :cpu, :tiny
  soc             SOC adaptation of a trained model on unlabelled frames; :cpu, :tiny,
                  :release, :paper, :lowres, :bn_affine (docs/soc.md)
  supervised_gpu, supervised_tpu   the recipe for GPUs (bf16) and TPU pod slices
Override any field with --config.FIELD=VALUE (fields: modnet_jax/training/config.py).

The workdir (default ./workdir/<config>[_<variant>]) gets config.json, checkpoints/,
metrics.jsonl, tensorboard/ and samples/; rerunning the command resumes. Mistakes are one
error line, exit status 2, nothing written. More: docs/training.md, docs/scaling.md (hosts).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

from absl import app, flags
from ml_collections import config_flags

from modnet_jax.training import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "a shipped config name or a config file, optionally with :VARIANT "
    "(supervised:quick, configs/supervised.py:quick)", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "run folder (default: ./workdir/<config>[_<variant>])")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "multi-host: initialise jax.distributed (docs/scaling.md)")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "multi-host: host:port of process 0")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-host: number of processes")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-host: this process's index")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "multi-host GPU: the devices this process drives (0,1,..)")
_OWN_FLAGS = ("config", "workdir", "distributed", "coordinator", "num_processes", "process_id",
              "local_device_ids")


def default_workdir(config_spec: str) -> str:
    """./workdir/<stem>[_<variant>]: ``supervised:quick`` -> ./workdir/supervised_quick (the
    same for ``configs/supervised.py:quick``)."""
    path, _, variant = config_spec.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("workdir", stem + (f"_{variant}" if variant else ""))


def parse_flags(argv):
    """absl's flag parsing behind ``cli.preparse``: every mistake is one ``error:`` line."""
    try:
        argv = cli.preparse(argv, __doc__, flags.FLAGS, [flags.FLAGS[n] for n in _OWN_FLAGS])
        sys.argv[:] = argv  # config_flags reads the override order from sys.argv
        return flags.FLAGS(argv)
    except cli.UsageError as err:
        cli.fail(str(err))
    except flags.Error as err:
        cli.fail(" ".join(line.strip() for line in str(err).splitlines() if line.strip()))


def _setup_logging() -> None:
    """One line per record, routed around the progress line; JAX's backend probing
    ("Unable to initialize backend 'tpu'") and Orbax's narration of every save are dropped
    (their warnings are kept)."""
    from modnet_jax.training.reporting import LogHandler

    root = logging.getLogger()
    for handler in list(root.handlers):  # absl's own handler
        root.removeHandler(handler)
    handler = LogHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
    for name in ("absl", "jax"):  # Orbax's narration, JAX's backend probing: warnings only
        logging.getLogger(name).setLevel(logging.WARNING)
    from modnet_jax.training import run_config

    config = _CONFIG.value
    workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
    try:
        workdir = cli.check_workdir(workdir)
        changed = run_config.check_resume(workdir, config)
        run_config.check_init_from(config)
    except (cli.UsageError, run_config.ResumeError) as err:
        cli.fail(str(err))
    _setup_logging()
    if changed:
        logging.warning("resuming %s with %d changed config field(s): %s", workdir,
                        len(changed), "; ".join(changed))
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
    from modnet_jax.training import preflight

    if jax.process_index() != 0:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        checked = preflight.check_run(config, resuming=run_config.has_checkpoint(workdir))
    except preflight.ConfigError as err:
        cli.fail(str(err))
    _train(config, workdir, checked)


def _train(config, workdir: str, checked) -> None:
    """The run itself. A failure is one ``error:`` line with exit status 1; a workdir this
    run created is removed again unless it holds a checkpoint by then."""
    import jax

    from modnet_jax.data import DatasetError
    from modnet_jax.training import reporting, run_config
    from modnet_jax.training.loop import NonFiniteLossError, train

    created = not os.path.exists(workdir)
    try:
        result = train(config, workdir, checked)
    except BaseException as err:
        if created and jax.process_index() == 0 and not run_config.has_checkpoint(workdir):
            shutil.rmtree(workdir, ignore_errors=True)
        # OSError: a file the run cannot write (imaging.output.WriteError names it and says
        # why: no space left, read-only file system...); ValueError: a damaged checkpoint too
        if isinstance(err, (DatasetError, NonFiniteLossError, ValueError, OSError)):
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        raise
    if jax.process_index() == 0:
        print("\n".join(reporting.summary_lines(workdir, result)))

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
