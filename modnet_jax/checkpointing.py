"""Orbax checkpoints: one layout for training runs, model exports and conversions.

Layout (an Orbax ``CheckpointManager`` directory)::

    <dir>/<step>/state/   StandardSave of {"params", "batch_stats", ["opt_state"], "step"}
    <dir>/<step>/data/    JsonSave of the Grain iterator state (training runs only)

A training workdir keeps its manager directory in ``<workdir>/checkpoints``. Model-only
checkpoints (``convert_from_torch``, exports) use the same layout with only the model variables
in ``state``, so every command that takes ``--checkpoint`` accepts any of: a workdir, a manager
directory, or one step directory.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

STATE_ITEM = "state"
DATA_ITEM = "data"
CHECKPOINT_SUBDIR = "checkpoints"


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
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(os.path.join(step_dir, STATE_ITEM))


def load_variables(path: str, step: Optional[int] = None) -> dict:
    """``{"params", "batch_stats"}`` of a checkpoint (training run or model-only export)."""
    tree = load_state_tree(path, step)
    missing = [k for k in ("params", "batch_stats") if k not in tree]
    if missing:
        raise ValueError(f"checkpoint {resolve_checkpoint(path, step)} has no {missing} "
                         f"(found {sorted(tree)}); is it a modnet_jax checkpoint?")
    return {"params": tree["params"], "batch_stats": tree["batch_stats"]}


def save_variables(directory: str, variables: Any, step: int = 0) -> str:
    """Write a model-only checkpoint (params + batch_stats) as ``<directory>/<step>/state``.

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
    with ocp.CheckpointManager(directory, options=options) as mgr:
        mgr.save(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(tree)}),
                 force=True)
        mgr.wait_until_finished()
    return os.path.join(directory, str(step))
