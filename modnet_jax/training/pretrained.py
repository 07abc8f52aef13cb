"""Initialise a model from saved variables (a supervised run, a converted release checkpoint,
or a backbone-only checkpoint), leaf by leaf, with a report of what was taken."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np
from flax import traverse_util


def load_init_variables(path: str) -> dict:
    """Variables to start from: a checkpoint (workdir / manager dir / step dir) or the official
    ONNX export (``*.onnx``; needs the optional ``onnx`` package)."""
    from modnet_jax.interop.onnx_import import is_onnx_file

    if is_onnx_file(path):
        from modnet_jax.interop.onnx_import import load_onnx_variables
        from modnet_jax.interop.torch_io import InteropError

        try:
            return load_onnx_variables(path)[0]
        except InteropError as err:  # onnx missing, unreadable file: a one-line error
            raise ValueError(f"init_from: {err}") from None
    from modnet_jax import checkpointing

    return checkpointing.load_variables(path)


def merge_pretrained(fresh: Any, loaded: Any) -> Tuple[dict, str]:
    """Variables shaped like ``fresh`` taking every leaf ``loaded`` has at the same path.

    Leaves missing from ``loaded`` keep their fresh initialisation (e.g. the heads when only a
    backbone was saved). Shape mismatches and leaves the model does not have are errors, all
    listed at once.
    """
    out, taken, problems = {}, 0, []
    for collection in ("params", "batch_stats"):
        f = traverse_util.flatten_dict(dict(fresh.get(collection, {})), sep="/")
        src = traverse_util.flatten_dict(dict(loaded.get(collection, {})), sep="/")
        merged = {}
        for path, value in f.items():
            if path in src:
                got = np.asarray(src[path])
                if got.shape != np.shape(value):
                    problems.append(f"{collection}/{path}: checkpoint {got.shape} vs model "
                                    f"{np.shape(value)}")
                    continue
                merged[path] = got.astype(np.asarray(value).dtype)
                taken += 1
            else:
                merged[path] = value
        problems += [f"{collection}/{p}: not in this model" for p in sorted(set(src) - set(f))]
        out[collection] = traverse_util.unflatten_dict(merged, sep="/")
    if problems:
        raise ValueError("checkpoint does not fit the model (is model config the same?): "
                         + "; ".join(problems[:20])
                         + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else ""))
    total = sum(len(traverse_util.flatten_dict(dict(fresh.get(c, {}))))
                for c in ("params", "batch_stats"))
    return out, f"{taken} of {total} arrays loaded, {total - taken} freshly initialised"
