"""Checkpoints for inference: load variables and check that they fit the model (one-line errors)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from modnet_jax.checkpointing import load_variables


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model: one-line message."""


def _flat_shapes(tree: Any) -> Dict[str, Tuple[int, ...]]:
    flat = traverse_util.flatten_dict(dict(tree), sep="/")
    return {k: tuple(np.shape(v)) for k, v in flat.items()}


def expected_shapes(model) -> Dict[str, Tuple[int, ...]]:
    """{"params/...": shape, "batch_stats/...": shape} of ``model`` (abstract init, no compute)."""
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    # The key is made inside the trace: an eager jax.random.key would compile a program.
    abstract = jax.eval_shape(lambda img: model.init(jax.random.key(0), img, train=False), x)
    return _flat_shapes({k: abstract[k] for k in ("params", "batch_stats") if k in abstract})


def _collapse(keys: List[str], universe: Dict[str, Any]) -> List[str]:
    """Name whole absent subtrees once: the shortest prefix all of whose keys are in ``keys``."""
    chosen: List[str] = []
    absent = set(keys)
    for key in keys:
        parts = key.split("/")
        for n in range(1, len(parts) + 1):
            prefix = "/".join(parts[:n])
            under = [k for k in universe if k == prefix or k.startswith(prefix + "/")]
            if all(k in absent for k in under):
                if prefix not in chosen:
                    chosen.append(prefix)
                break
    return chosen


def check_variables(model, variables: Dict[str, Any], source: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` (one line, first differences) if shapes do not fit ``model``."""
    want = expected_shapes(model)
    have = _flat_shapes({k: variables.get(k, {}) for k in ("params", "batch_stats")})
    problems = [f"{k} is {have[k]} but the model needs {want[k]}"
                for k in want if k in have and have[k] != want[k]]
    problems += [f"missing {k}" for k in _collapse([k for k in want if k not in have], want)]
    problems += [f"unexpected {k}" for k in _collapse([k for k in have if k not in want], have)]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"{source}: does not fit this model (lr_branch={model.lr_branch!r}, "
            f"hr_channels={model.hr_channels}): {'; '.join(problems[:3])}{more}; "
            f"was it trained with other --lr-branch / --hr-channels?")


def load_checked_variables(model, checkpoint: str, step: Optional[int] = None) -> Dict[str, Any]:
    """Variables of ``checkpoint`` after ``check_variables``; every failure is a CheckpointError.

    ``checkpoint`` is a project checkpoint or a release weights file (the official ONNX, a
    PyTorch state_dict), imported on the fly (``interop.release_files``)."""
    from modnet_jax.interop.release_files import load_release_file, release_kind
    from modnet_jax.interop.torch_io import InteropError

    try:
        if release_kind(checkpoint):
            variables = load_release_file(checkpoint)[0]
        else:
            variables = load_variables(checkpoint, step)
    except (FileNotFoundError, ValueError, InteropError) as exc:
        raise CheckpointError(str(exc)) from None
    except Exception as exc:  # orbax / tensorstore errors on damaged directories
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{checkpoint}: cannot read checkpoint ({type(exc).__name__}: "
                              f"{first})") from None
    check_variables(model, variables, source=checkpoint)
    return variables
