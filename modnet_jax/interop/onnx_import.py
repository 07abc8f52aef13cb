"""Import the official MODNet ONNX export (``modnet_photographic_portrait_matting.onnx``).

What the official export holds (PyTorch 1.7 exporter, opset 11, inference path only):

* the MobileNetV2 backbone's 52 Conv+BatchNorm pairs folded into biased convolutions whose
  initializers have numeric names; the graph lists them in forward order, which is the order
  of the backbone's convolutions in :func:`keys.modnet_entries`;
* the SE block's two Linear layers as ``MatMul`` nodes with numeric weights stored transposed
  ((in, out) instead of torch's (out, in));
* the LR/HR/fusion branches under the release's own names (``hr_branch.conv_hr2x.0.layers.0
  .weight``, ``...layers.1.bnorm.running_mean``), BatchNorm halves unfolded;
* no semantic/detail heads (``lr_branch.conv_lr``, ``hr_branch.conv_hr.*``): the export traced
  the inference path. Those heads are filled with the release's initialisation (seeded) and
  reported; they matter only for supervised fine-tuning, which trains them.

A folded conv ``(W, b)`` becomes our bias-free conv ``W`` followed by a BatchNorm with
gamma 1, beta b, running mean 0 and running variance ``1 - eps``: in eval mode
``(x - 0) / sqrt(1 - eps + eps) * 1 + b = x + b``, the same function. (Train mode is a different
function; see ``modnet_jax.interop.recalibrate``.)

The importer builds the release's ``state_dict`` and reuses the key table (``keys``), so an
imported model converts back to a ``.ckpt`` like any other. ``onnx`` is an optional extra
(``pip install "modnet_jax[torch]"``); nothing here is needed for training.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from modnet_jax.interop.keys import (
    ALIAS,
    BACKBONE,
    StateDictMismatch,
    modnet_entries,
    torch_to_flax,
)
from modnet_jax.interop.torch_io import InteropError, _first_line, require_optional
from modnet_jax.models.layers import BN_EPS

# The release modules the official export does not contain (training-only heads).
MISSING_HEADS = ("lr_branch.conv_lr.", "hr_branch.conv_hr.")
SE_KEYS = ("lr_branch.se_block.fc.0.weight", "lr_branch.se_block.fc.2.weight")
MODEL_CONFIG = {"hr_channels": 32, "lr_branch": "se"}


def require_onnx():
    """``import onnx``, or an :class:`InteropError` that says how to install it."""
    return require_optional("onnx", "reading an ONNX file")


def read_onnx(path: str) -> Tuple[Dict[str, np.ndarray], List[Tuple[str, List[str]]]]:
    """(initializers by name as numpy, [(op_type, input names)] of every node in graph order)."""
    onnx = require_onnx()
    from onnx import numpy_helper

    if not os.path.isfile(path):
        raise InteropError(f"{path}: no such file")
    try:
        model = onnx.load(path)
    except Exception as exc:  # truncated / not protobuf
        raise InteropError(f"cannot read {path} as an ONNX model: {_first_line(exc)}") from None
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [(n.op_type, list(n.input)) for n in model.graph.node]
    return inits, nodes


def _folded_state_dict(inits: Mapping[str, np.ndarray], nodes, eps: float) -> Dict[str, Any]:
    """The release state_dict entries the ONNX file covers (backbone unfolded, SE, branches)."""
    entries = [e for e in modnet_entries() if not e.alias]
    backbone_convs = [e for e in entries if e.torch_key.startswith(BACKBONE)
                      and e.layout == "conv"]
    folded, matmuls = [], []
    for op, inputs in nodes:
        named = [x for x in inputs if x in inits]
        if op == "Conv" and named and not named[0].startswith(("lr_branch.", "hr_branch.",
                                                               "f_branch.")):
            folded.append(named)
        elif op in ("MatMul", "Gemm") and named:
            matmuls.append(named[0])
    if len(folded) != len(backbone_convs) or len(matmuls) != len(SE_KEYS):
        raise StateDictMismatch(
            f"this ONNX file is not the official MODNet export: found {len(folded)} folded "
            f"backbone convolutions (expected {len(backbone_convs)}) and {len(matmuls)} "
            f"MatMul weights (expected {len(SE_KEYS)})")
    sd: Dict[str, Any] = {}
    problems = []
    for entry, names in zip(backbone_convs, folded):
        weight = inits[names[0]]
        c_out = entry.torch_shape[0]
        bias = inits[names[1]] if len(names) > 1 else np.zeros((c_out,), np.float32)
        if tuple(weight.shape) != entry.torch_shape or tuple(bias.shape) != (c_out,):
            problems.append(f"{entry.torch_key} ({names[0]}) {tuple(weight.shape)} != "
                            f"{entry.torch_shape}")
            continue
        bn = entry.torch_key[:-len(".weight")]
        # features.N.conv.K -> BatchNorm features.N.conv.(K+1); features.0.0 -> features.0.1
        head, last = bn.rsplit(".", 1)
        bn = f"{head}.{int(last) + 1}"
        sd[entry.torch_key] = weight
        sd[f"{bn}.weight"] = np.ones((c_out,), np.float32)
        sd[f"{bn}.bias"] = bias.astype(np.float32)
        sd[f"{bn}.running_mean"] = np.zeros((c_out,), np.float32)
        sd[f"{bn}.running_var"] = np.full((c_out,), 1.0 - eps, np.float32)
    for key, name in zip(SE_KEYS, matmuls):
        sd[key] = np.ascontiguousarray(inits[name].T)  # MatMul (in, out) -> Linear (out, in)
    for e in entries:
        if not e.torch_key.startswith(BACKBONE) and e.torch_key in inits:
            sd[e.torch_key] = inits[e.torch_key]
    if problems:
        raise StateDictMismatch("the ONNX backbone convolutions do not fit MobileNetV2: "
                                + "; ".join(problems[:10]))
    return sd


def _release_init(entries, seed: int) -> Dict[str, np.ndarray]:
    """The release's initialisation of these entries (numpy, seeded): conv weights
    kaiming-uniform (fan_in, ReLU gain: bound sqrt(6 / fan_in)), biases 0, BatchNorm weight 1,
    bias 0, running mean 0, running variance 1."""
    rng = np.random.default_rng(seed)
    out = {}
    for e in entries:
        leaf = e.torch_key.rsplit(".", 1)[1]
        if e.layout == "conv":
            bound = np.sqrt(6.0 / int(np.prod(e.torch_shape[1:])))
            value = rng.uniform(-bound, bound, e.torch_shape)
        elif leaf in ("weight", "running_var"):
            value = np.ones(e.torch_shape)
        else:
            value = np.zeros(e.torch_shape)
        out[e.torch_key] = value.astype(np.float32)
    return out


def onnx_to_state_dict(path: str, seed: int = 0, eps: float = BN_EPS
                       ) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The release ``state_dict`` (numpy; aliases included) from the official ONNX export.

    Returns (state_dict, keys filled from a fresh seeded initialisation because the file has
    no such tensor: the training-only heads).
    """
    inits, nodes = read_onnx(path)
    sd = _folded_state_dict(inits, nodes, eps)
    entries = [e for e in modnet_entries() if e.layout != "counter"]
    missing = [e.torch_key for e in entries if not e.alias and e.torch_key not in sd]
    not_heads = [k for k in missing if not k.startswith(MISSING_HEADS)]
    if not_heads:
        raise StateDictMismatch(f"{path} lacks {len(not_heads)} tensors of the release MODNet "
                                f"that the official export has: {', '.join(not_heads[:20])}")
    if missing:
        sd.update(_release_init([e for e in entries if e.torch_key in missing], seed))
    for e in entries:
        if e.alias:
            sd[e.torch_key] = sd[e.torch_key[len(ALIAS):]]
    return {e.torch_key: sd[e.torch_key] for e in entries}, missing


def load_onnx_variables(path: str, seed: int = 0) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """One call: the official ONNX export -> (``{"params", "batch_stats"}``, model config).

    The variables are numpy arrays; the model config is what ``models.model_from_config``
    takes (the release architecture). Eval-mode mattes equal onnxruntime's; for training,
    first run ``modnet_jax.interop.recalibrate.recalibrate_batchnorm`` on a few of your images.
    """
    sd, _ = onnx_to_state_dict(path, seed)
    variables, _ = torch_to_flax(sd)
    return variables, dict(MODEL_CONFIG)
