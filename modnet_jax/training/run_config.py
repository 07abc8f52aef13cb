"""A run remembers itself: the resolved config in ``<workdir>/config.json``, checked on resume.

Every start writes the config it runs with (all fields, overrides applied) to
``<workdir>/config.json``. Resuming a workdir that has checkpoints compares the new config
with the one saved there and with the model settings recorded in its newest checkpoint:

* a different architecture (``model.lr_branch``, ``model.hr_channels``, ``model.easpp_rates``)
  cannot load the saved weights: ``check_resume`` raises ``ResumeError`` naming what differs,
  before anything is built or compiled;
* any other changed field is allowed (a longer run, another learning rate, ...) and listed
  in one warning, so a silent change of ``image_size`` cannot go unnoticed.

``check_init_from`` does the architecture check for ``config.init_from``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

from modnet_jax import checkpointing
from modnet_jax.imaging import output

LOGGER = logging.getLogger(__name__)
CONFIG_FILE = "config.json"


class ResumeError(ValueError):
    """The workdir's checkpoints cannot be resumed with this config (one-line message)."""


def _plain(value: Any) -> Any:
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"model.lr_branch": "se", ...}`` from nested dicts."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def save_run_config(workdir: str, config) -> str:
    """Write ``config`` (a ConfigDict or mapping) to ``<workdir>/config.json``; its path."""
    output.make_folders(workdir)
    path = os.path.join(workdir, CONFIG_FILE)  # whole or not at all; WriteError names it
    output.write_text(path, json.dumps(_plain(config), indent=2, sort_keys=True) + "\n")
    return path


def load_run_config(workdir: str) -> Optional[Dict[str, Any]]:
    """The config saved in ``workdir`` (nested dicts), or None if there is none or unreadable."""
    try:
        with open(os.path.join(workdir, CONFIG_FILE)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def changed_fields(saved: Dict[str, Any], config) -> List[str]:
    """``["image_size 64 -> 96", ...]`` for every field whose value differs (or is new/gone)."""
    old, new = flatten(saved), flatten(_plain(config))
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            out.append(f"{key} {old.get(key, '<unset>')!r} -> {new.get(key, '<unset>')!r}")
    return out


def has_checkpoint(workdir: str) -> bool:
    """Whether ``<workdir>/checkpoints`` holds a checkpoint (a run would resume from it)."""
    try:
        checkpointing.resolve_checkpoint(os.path.join(workdir, checkpointing.CHECKPOINT_SUBDIR))
    except FileNotFoundError:
        return False
    return True


def check_resume(workdir: str, config) -> List[str]:
    """Checks a resume of ``workdir`` with ``config``; returns the other changed fields.

    Nothing to check (and ``[]``) when the workdir has no checkpoint yet. Raises
    ``ResumeError`` when the architecture differs from the saved config's or the newest
    checkpoint's.
    """
    ckpt_dir = os.path.join(workdir, checkpointing.CHECKPOINT_SUBDIR)
    try:
        recorded = checkpointing.model_metadata(ckpt_dir)
    except FileNotFoundError:
        return []
    saved = load_run_config(workdir)
    wanted = checkpointing.model_record(config.model)
    arch = [] if recorded is None else checkpointing.arch_differences(recorded, wanted)
    if not arch and saved is not None and isinstance(saved.get("model"), dict):
        arch = checkpointing.arch_differences(saved["model"], wanted)
    if arch:
        raise ResumeError(
            f"{workdir} holds checkpoints of another architecture ({', '.join(arch)}): "
            f"resume it with the architecture it was trained with, or give another --workdir")
    return [] if saved is None else changed_fields(saved, config)


def check_init_from(config) -> None:
    """ResumeError when ``config.init_from`` records another architecture than ``config``'s."""
    if not config.get("init_from") or os.path.isfile(str(config.init_from)):
        return  # nothing, or a file (an ONNX export): its loader checks it
    try:
        recorded = checkpointing.model_metadata(str(config.init_from))
    except FileNotFoundError as err:
        raise ResumeError(f"config.init_from: {err}") from None
    arch = [] if recorded is None else checkpointing.arch_differences(
        recorded, checkpointing.model_record(config.model))
    if arch:
        raise ResumeError(f"config.init_from {config.init_from} is a model of another "
                          f"architecture ({', '.join(arch)}): set --config.model.* to match it")
