"""The released MODNet weights as files a user has: the official ONNX export or a PyTorch
``state_dict`` (``.pth``/``.pt``/``.ckpt``). Every command that takes a checkpoint also takes
these, imported on the fly: one place decides what such a file is and how it is read.

A project checkpoint is a directory (Orbax); a release file is a single file. Failures are an
:class:`~modnet_jax.interop.torch_io.InteropError` or a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

RELEASE_SUFFIXES = {".onnx": "ONNX", ".pth": "PyTorch", ".pt": "PyTorch", ".ckpt": "PyTorch"}


def release_kind(path: str) -> Optional[str]:
    """"ONNX" or "PyTorch" for a release weights file at ``path``; None for anything else
    (a project checkpoint directory, a missing path)."""
    if not os.path.isfile(path):
        return None
    return RELEASE_SUFFIXES.get(os.path.splitext(str(path))[1].lower())


def load_release_file(path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(``{"params", "batch_stats"}`` as numpy, the model config to build) of a release file.

    The ONNX export imports exactly (eval-mode mattes equal onnxruntime's); a PyTorch file must
    be the full release MODNet (a strict load; a backbone-only file is refused here: it has no
    matting heads to predict with).
    """
    from modnet_jax.interop.onnx_import import MODEL_CONFIG, load_onnx_variables
    from modnet_jax.interop.keys import torch_to_flax
    from modnet_jax.interop.torch_io import load_state_dict_file

    kind = release_kind(path)
    if kind == "ONNX":
        return load_onnx_variables(path)
    if kind != "PyTorch":
        raise ValueError(f"{path}: not a release weights file (expected one of "
                         f"{', '.join(sorted(RELEASE_SUFFIXES))})")
    variables, what = torch_to_flax(load_state_dict_file(path))
    if what != "modnet":
        raise ValueError(f"{path} holds only a MobileNetV2 backbone, not a whole MODNet: "
                         f"use it as --config.init_from for training, not to predict")
    return variables, dict(MODEL_CONFIG)


def model_config_for_release(path: str, **given: Any) -> Dict[str, Any]:
    """The model config of a release file (the release architecture). A given command-line
    value (None = not given) that contradicts it is a ``ValueError`` (one line)."""
    from modnet_jax.interop.onnx_import import MODEL_CONFIG

    for key, value in given.items():
        if value is not None and key in MODEL_CONFIG and value != MODEL_CONFIG[key]:
            raise ValueError(f"{path} holds the release architecture ({key}="
                             f"{MODEL_CONFIG[key]!r}), but --{key.replace('_', '-')} {value} "
                             f"was given (leave it out)")
    return dict(MODEL_CONFIG)
