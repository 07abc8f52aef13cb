"""Reading, writing and exporting PyTorch files. torch is imported lazily, inside functions.

Every failure a user can cause (torch missing, a file that is refused, truncated or not a
state_dict, tensors that do not fit) is an :class:`InteropError` (or a ``ValueError`` from
``keys``) with a one-line message; the CLIs print it as ``error: ...``.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from modnet_jax.interop.keys import strip_dataparallel

INSTALL_HINT = 'pip install "modnet_jax[torch]"'


class InteropError(RuntimeError):
    """A user-facing failure with a one-line message."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def require_optional(module: str, what: str):
    """``import module`` (an optional extra), or an :class:`InteropError` saying ``what`` needs
    it and how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InteropError(f"{what} needs {module}, which cannot be imported "
                           f"({_first_line(exc)}); install the optional extra: "
                           f"{INSTALL_HINT}") from None


def require_torch():
    """``import torch``, or an :class:`InteropError` that says how to install it."""
    return require_optional("torch", "this command (PyTorch interop)")


def _unpickling_reason(exc: BaseException) -> Tuple[bool, str]:
    """(whether torch refused a pickled global, i.e. code; the line of its message that says
    what), from torch's multi-line weights-only error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line:
            return True, line[line.index("GLOBAL"):].split(". ")[0].rstrip(".")
    for line in lines:
        if line.startswith("Unsupported"):
            return False, line.rstrip(".")
    return False, _first_line(exc)


def load_state_dict_file(path: str) -> Dict[str, np.ndarray]:
    """A ``.ckpt``/``.pth`` state_dict as numpy arrays, read with ``weights_only=True``.

    Floating tensors become float32 (fp16/bf16/fp64 files are accepted); integer buffers keep
    their dtype. Files whose pickle holds anything but tensors and containers are refused.
    """
    torch = require_torch()
    if not os.path.isfile(path):
        raise InteropError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # refusals, zip/stream errors, EOF, bad magic number, ...
        is_code, reason = (_unpickling_reason(exc) if isinstance(exc, pickle.UnpicklingError)
                           else (False, _first_line(exc)))
        if is_code:
            raise InteropError(
                f"{path} was refused: it holds pickled objects that are not plain tensors "
                f"({reason}); it is read with torch.load(weights_only=True) so that no code "
                f"inside a checkpoint runs. Re-save only the tensors, e.g. "
                f"torch.save(model.state_dict(), path), where the file is trusted") from None
        raise InteropError(f"cannot read {path} as a PyTorch file (truncated, corrupt or not "
                           f"written by torch.save): {reason}") from None
    if not isinstance(obj, Mapping):
        raise InteropError(f"{path} holds a {type(obj).__name__}, not a state_dict "
                           f"(a mapping of names to tensors)")
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise InteropError(f"{path} is not a plain state_dict: entries that are not tensors: "
                           f"{', '.join(not_tensors[:20])}")
    out = {}
    for key, tensor in obj.items():
        tensor = tensor.detach().cpu()
        out[key] = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    return out


def to_tensors(state_dict: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """numpy state_dict -> ordered dict of (C-contiguous, owned) torch tensors."""
    torch = require_torch()
    return {k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in state_dict.items()}


def save_state_dict_file(state_dict: Mapping[str, np.ndarray], path: str) -> None:
    """``torch.save`` of the state_dict, written whole or not at all (``imaging.output``; a
    failure is a WriteError naming ``path`` and the OS's reason)."""
    from modnet_jax.imaging import output

    torch = require_torch()
    buffer = io.BytesIO()
    torch.save(to_tensors(state_dict), buffer)
    output.make_folders(os.path.dirname(os.path.abspath(path)))
    output.atomic_write(path, buffer.getbuffer())


def torch_model(state_dict: Optional[Mapping[str, np.ndarray]] = None):
    """The package's release-layout torch MODNet in eval mode, strict-loaded if given weights.

    Accepts state_dicts with or without the ``module.`` prefix.
    """
    require_torch()
    from modnet_jax.interop.torch_modnet import MODNet

    model = MODNet()
    if state_dict is not None:
        model.load_state_dict(to_tensors(strip_dataparallel(state_dict)), strict=True)
    return model.eval()


def export_onnx(model, opset: int = 17) -> bytes:
    """The ONNX model ``img [B,3,H,W] -> matte [B,1,H,W]`` (dynamic batch, height and width),
    as bytes: the caller checks it (``check_onnx``) before writing it (``imaging.output``).

    Uses the TorchScript exporter (``dynamo=False``), which needs no extra packages.
    """
    import warnings

    torch = require_torch()
    from modnet_jax.interop.torch_modnet import MatteOnly

    dummy = torch.zeros(1, 3, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation / tracer notices
        torch.onnx.export(MatteOnly(model).eval(), (dummy,), buffer, dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": axes, "output": axes}, opset_version=opset)
    return buffer.getvalue()


def check_onnx(model_bytes: bytes, model, shape: Tuple[int, int, int, int] = (2, 3, 64, 96),
               seed: int = 0) -> float:
    """Run the ONNX model (its bytes) with onnxruntime and the torch model on one input;
    max |diff|."""
    torch = require_torch()
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise InteropError(f"ONNX export needs onnx and onnxruntime ({_first_line(exc)}); "
                           f"install the optional extra: {INSTALL_HINT}") from None
    onnx.checker.check_model(onnx.load_model_from_string(model_bytes))
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x), inference=True)[2].numpy()
    return float(np.max(np.abs(got - want)))


def run_cli(main_fn, argv=None) -> int:
    """Run ``main_fn(argv)``; user-facing failures become ``error: <one line>`` and exit code 1
    (an output that cannot be written too: ``imaging.output.WriteError``, with the OS's
    reason and the path; nothing half-written is left)."""
    import sys

    from modnet_jax.imaging.files import InputError
    from modnet_jax.interop.keys import StateDictMismatch, UnsupportedVariant

    try:
        main_fn(argv)
    except (InteropError, StateDictMismatch, UnsupportedVariant, InputError, OSError,
            ValueError) as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"error: {message or type(exc).__name__}", file=sys.stderr)
        return 1
    return 0
