"""PyTorch / ONNX interop for the release's checkpoint layout (docs/architecture.md).

``keys`` (numpy only) maps the Flax variables to the release ``state_dict`` and back;
``torch_io`` reads/writes ``.ckpt`` files and exports ONNX, importing torch only when called;
``torch_modnet`` is the release-named PyTorch model (import it only with torch installed).
torch is an optional extra: ``pip install "modnet_jax[torch]"``.
"""

from modnet_jax.interop.keys import (
    StateDictMismatch,
    UnsupportedVariant,
    backbone_entries,
    flax_to_torch,
    modnet_entries,
    torch_to_flax,
)
from modnet_jax.interop.torch_io import INSTALL_HINT, InteropError, require_torch

__all__ = [
    "INSTALL_HINT",
    "InteropError",
    "StateDictMismatch",
    "UnsupportedVariant",
    "backbone_entries",
    "flax_to_torch",
    "modnet_entries",
    "require_torch",
    "torch_to_flax",
]
