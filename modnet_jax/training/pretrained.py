"""Initialise a model from saved variables (a supervised run, a converted release checkpoint,
or a backbone-only checkpoint), leaf by leaf, with a report of what was taken."""

from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np
from flax import traverse_util


def load_init_variables(path: str) -> dict:
    """Variables to start from: a checkpoint (workdir / manager dir / step dir) or a release
    weights file (``interop/release_files.py``: the official ONNX export, which needs the
    optional ``onnx`` package, or a PyTorch ``state_dict`` ``.pth``/``.pt``/``.ckpt``, which
    needs ``torch``; a bare MobileNetV2 backbone file initialises the backbone only).
    Any failure is a ``ValueError`` with a one-line message starting ``init_from``."""
    from modnet_jax.interop.release_files import not_release_weights, release_kind

    path = str(path)
    kind = release_kind(path)
    try:
        if kind == "ONNX":
            from modnet_jax.interop.onnx_import import load_onnx_variables

            return load_onnx_variables(path)[0]
        if kind == "PyTorch":
            from modnet_jax.interop.keys import torch_to_flax
            from modnet_jax.interop.torch_io import load_state_dict_file

            return torch_to_flax(load_state_dict_file(path))[0]
        if os.path.isfile(path):
            raise ValueError(f"init_from {not_release_weights(path)}")
        from modnet_jax import checkpointing

        return checkpointing.load_variables(path)
    except Exception as err:  # noqa: BLE001 - torch/onnx/orbax failures: one line
        if isinstance(err, (KeyboardInterrupt, MemoryError)):
            raise
        text = (str(err).strip() or type(err).__name__).splitlines()[0]
        if not text.startswith("init_from"):
            text = f"init_from {path}: {text}"
        raise ValueError(text) from None


def merge_pretrained(fresh: Any, loaded: Any) -> Tuple[dict, str]:
    """Variables shaped like ``fresh`` taking every leaf ``loaded`` has at the same path.

    Leaves missing from ``loaded`` keep their fresh initialisation (e.g. the heads when only a
    backbone was saved). ``fresh`` may hold ``jax.ShapeDtypeStruct`` leaves (a check before
    anything is initialised: ``training/preflight.py``). Shape mismatches and leaves the model does not have are errors, all
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
                if got.shape != tuple(value.shape):  # value: an array or its ShapeDtypeStruct
                    problems.append(f"{collection}/{path}: checkpoint {got.shape} vs model "
                                    f"{tuple(value.shape)}")
                    continue
                merged[path] = got.astype(value.dtype)
                taken += 1
            else:
                merged[path] = value
        problems += [f"{collection}/{p}: not in this model" for p in sorted(set(src) - set(f))]
        out[collection] = traverse_util.unflatten_dict(merged, sep="/")
    if problems:
        raise ValueError("init_from does not fit the model (not a MODNet, or another "
                         "--config.model.*): "
                         + "; ".join(problems[:20])
                         + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else ""))
    if taken == 0:
        raise ValueError("init_from holds no MODNet variables (nothing matched the model)")
    total = sum(len(traverse_util.flatten_dict(dict(fresh.get(c, {}))))
                for c in ("params", "batch_stats"))
    return out, f"{taken} of {total} arrays loaded, {total - taken} freshly initialised"
