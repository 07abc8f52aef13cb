"""The released MODNet weights as files a user has: the official ONNX export or a PyTorch
``state_dict`` (``.pth``/``.pt``/``.ckpt``). Every command that takes a checkpoint also takes
these, imported on the fly: one place decides what such a file is and how it is read.

A project checkpoint is a directory (Orbax); a release file is a single file, identified by
its content (``imaging/signatures.py``: an ONNX ``ModelProto``, torch.save's ZIP archive or
legacy pickle); the extension is only a hint, used when the content is unrecognised (an empty
or damaged file, whose loader then says why it cannot be read). An ONNX model named ``.pth``
is read as ONNX; a file whose content is something else (an image, a text file...) is no
release file, whatever its name, and the commands say what it is. Failures are an
:class:`~modnet_jax.interop.torch_io.InteropError` or a ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

from modnet_jax.imaging.signatures import describe, kind_of

RELEASE_SUFFIXES = {".onnx": "ONNX", ".pth": "PyTorch", ".pt": "PyTorch", ".ckpt": "PyTorch"}
_BY_CONTENT = {"onnx": "ONNX", "torch": "PyTorch"}


def release_kind(path: str) -> Optional[str]:
    """"ONNX" or "PyTorch" for a release weights file at ``path`` (by its content; by its
    extension when the content is unrecognised); None for anything else (a project checkpoint
    directory, a missing path, a file whose content is another kind: `not_release_weights`
    says which)."""
    if not os.path.isfile(path):
        return None
    content = kind_of(str(path))
    if content is not None:
        return _BY_CONTENT.get(content)
    return RELEASE_SUFFIXES.get(os.path.splitext(str(path))[1].lower())


def not_release_weights(path: str) -> str:
    """The one-line reason a file is no release weights file, saying what its content is."""
    return (f"{path} is {describe(kind_of(str(path)))}, not release weights (an ONNX export "
            f"such as .onnx, a PyTorch state_dict such as .pth/.pt/.ckpt) nor a checkpoint "
            f"folder")


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
        raise ValueError(not_release_weights(path))
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
