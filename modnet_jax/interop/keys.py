"""One table that maps the Flax MODNet variables to the release's PyTorch ``state_dict``.

No torch here: both directions work on numpy arrays, so the table can be tested (and a state
dict validated) without PyTorch installed.

Each :class:`Entry` is one ``state_dict`` key of the release model (``MODNet()``, hr_channels 32,
the MobileNetV2 backbone), in the order ``nn.Module.state_dict()`` yields them, with its torch
shape, the Flax ``(collection, path)`` it corresponds to and the layout rule between the two:

* ``conv``: OIHW <-> HWIO (depthwise (C,1,k,k) <-> (k,k,1,C) is the same permutation);
* ``linear``: (out, in) <-> Dense kernel (in, out);
* ``vector``: identical (biases, BatchNorm affine and running statistics);
* ``counter``: BatchNorm ``num_batches_tracked`` (int64 scalar), which Flax does not keep.

The backbone is registered twice in the release (``backbone`` and ``lr_branch.backbone`` are
one module), so each backbone tensor has a second, ``alias`` entry pointing at the same Flax
leaf. Flax paths follow from torch module paths by one rule (:func:`flax_module_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from modnet_jax.models.mobilenetv2 import LAST_CHANNELS, STEM_CHANNELS, block_specs

DP_PREFIX = "module."
BACKBONE = "backbone.model."
ALIAS = "lr_branch."
HR_CHANNELS = 32
ENC_CHANNELS = (16, 24, 32, 96, LAST_CHANNELS)  # enc2x, enc4x, enc8x, enc16x, enc32x

# layout -> permutation taking the torch array to the Flax array (None: unchanged).
TO_FLAX_PERM = {"conv": (2, 3, 1, 0), "linear": (1, 0), "vector": None, "counter": None}
# BatchNorm2d leaf -> (Flax collection, Flax leaf).
_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var"),
              "num_batches_tracked": (None, None)}


class StateDictMismatch(ValueError):
    """The tensors do not fit the model; the message lists every problem by name."""


class UnsupportedVariant(ValueError):
    """The Flax model has no counterpart in the PyTorch release (e.g. ``lr_branch='easpp'``)."""


@dataclass(frozen=True)
class Entry:
    torch_key: str
    torch_shape: Tuple[int, ...]
    collection: Optional[str]  # "params", "batch_stats", or None for num_batches_tracked
    flax_path: Optional[Tuple[str, ...]]
    layout: str
    alias: bool = False

    @property
    def flax_shape(self) -> Tuple[int, ...]:
        perm = TO_FLAX_PERM[self.layout]
        return tuple(self.torch_shape[p] for p in perm) if perm else self.torch_shape


def flax_module_path(torch_module: str) -> Tuple[str, ...]:
    """``backbone.model.features.3.conv.0`` -> ``("backbone", "features_3", "conv_0")``.

    Numeric parts join the name before them with ``_``; the wrapper name ``model`` is dropped.
    """
    parts: List[str] = []
    for token in torch_module.split("."):
        if token.isdigit():
            parts[-1] = f"{parts[-1]}_{token}"
        elif not (token == "model" and parts == ["backbone"]):
            parts.append(token)
    return tuple(parts)


def _conv(module: str, c_out: int, c_in: int, k: int, bias: bool) -> Iterator[Entry]:
    fp = flax_module_path(module)
    yield Entry(f"{module}.weight", (c_out, c_in, k, k), "params", fp + ("kernel",), "conv")
    if bias:
        yield Entry(f"{module}.bias", (c_out,), "params", fp + ("bias",), "vector")


def _bn(module: str, c: int) -> Iterator[Entry]:
    fp = flax_module_path(module)
    for leaf, (collection, flax_leaf) in _BN_LEAVES.items():
        if collection is None:
            yield Entry(f"{module}.{leaf}", (), None, None, "counter")
        else:
            yield Entry(f"{module}.{leaf}", (c,), collection, fp + (flax_leaf,), "vector")


def _backbone_entries() -> Iterator[Entry]:
    f = BACKBONE + "features"
    yield from _conv(f"{f}.0.0", STEM_CHANNELS, 3, 3, False)
    yield from _bn(f"{f}.0.1", STEM_CHANNELS)
    for idx, (c_in, hidden, c_out, _, t) in enumerate(block_specs(), start=1):
        b = f"{f}.{idx}.conv"
        if t == 1:
            yield from _conv(f"{b}.0", hidden, 1, 3, False)  # depthwise
            yield from _bn(f"{b}.1", hidden)
            yield from _conv(f"{b}.3", c_out, hidden, 1, False)
            yield from _bn(f"{b}.4", c_out)
        else:
            yield from _conv(f"{b}.0", hidden, c_in, 1, False)
            yield from _bn(f"{b}.1", hidden)
            yield from _conv(f"{b}.3", hidden, 1, 3, False)  # depthwise
            yield from _bn(f"{b}.4", hidden)
            yield from _conv(f"{b}.6", c_out, hidden, 1, False)
            yield from _bn(f"{b}.7", c_out)
    last_in = block_specs()[-1][2]
    yield from _conv(f"{f}.18.0", LAST_CHANNELS, last_in, 1, False)
    yield from _bn(f"{f}.18.1", LAST_CHANNELS)


def _conv_ibn(module: str, c_in: int, c_out: int, k: int, ibn: bool = True) -> Iterator[Entry]:
    """The release's Conv2dIBNormRelu: ``layers.0`` conv (bias), ``layers.1.bnorm`` BN(C/2)."""
    yield from _conv(f"{module}.layers.0", c_out, c_in, k, True)
    if ibn:
        yield from _bn(f"{module}.layers.1.bnorm", c_out // 2)


def _head_specs():
    """(module, in, out, kernel, with_ibn) of every conv block of the three branches."""
    e2, e4, e8, e16, e32 = ENC_CHANNELS
    hr = HR_CHANNELS
    return {
        "lr_branch": [("conv_lr16x", e32, e16, 5, True), ("conv_lr8x", e16, e8, 5, True),
                      ("conv_lr", e8, 1, 3, False)],
        "hr_branch": [("tohr_enc2x", e2, hr, 1, True), ("conv_enc2x", hr + 3, hr, 3, True),
                      ("tohr_enc4x", e4, hr, 1, True), ("conv_enc4x", 2 * hr, 2 * hr, 3, True),
                      ("conv_hr4x.0", 3 * hr + 3, 2 * hr, 3, True),
                      ("conv_hr4x.1", 2 * hr, 2 * hr, 3, True),
                      ("conv_hr4x.2", 2 * hr, hr, 3, True),
                      ("conv_hr2x.0", 2 * hr, 2 * hr, 3, True),
                      ("conv_hr2x.1", 2 * hr, hr, 3, True), ("conv_hr2x.2", hr, hr, 3, True),
                      ("conv_hr2x.3", hr, hr, 3, True), ("conv_hr.0", hr + 3, hr, 3, True),
                      ("conv_hr.1", hr, 1, 1, False)],
        "f_branch": [("conv_lr4x", e8, hr, 5, True), ("conv_f2x", 2 * hr, hr, 3, True),
                     ("conv_f.0", hr + 3, hr // 2, 3, True), ("conv_f.1", hr // 2, 1, 1, False)],
    }


def modnet_entries() -> List[Entry]:
    """Every key of the release ``MODNet().state_dict()``, in its order."""
    backbone = list(_backbone_entries())
    entries = list(backbone)
    entries += [Entry(ALIAS + e.torch_key, e.torch_shape, e.collection, e.flax_path, e.layout,
                      alias=True) for e in backbone]
    e32 = ENC_CHANNELS[4]
    for name, shape in (("fc.0", (e32 // 4, e32)), ("fc.2", (e32, e32 // 4))):
        fp = flax_module_path(f"lr_branch.se_block.{name}") + ("kernel",)
        entries.append(Entry(f"lr_branch.se_block.{name}.weight", shape, "params", fp, "linear"))
    for branch, specs in _head_specs().items():
        for module, c_in, c_out, k, ibn in specs:
            entries += _conv_ibn(f"{branch}.{module}", c_in, c_out, k, ibn)
    return entries


def backbone_entries() -> List[Entry]:
    """The bare MobileNetV2 checkpoint (``features.*``, e.g. ``mobilenetv2_human_seg.ckpt``)."""
    return [Entry(e.torch_key[len(BACKBONE):], e.torch_shape, e.collection, e.flax_path,
                  e.layout) for e in _backbone_entries()]


# ----------------------------------------------------------------------------- helpers


def _get(tree: Mapping[str, Any], path: Tuple[str, ...]):
    for p in path:
        if not isinstance(tree, Mapping) or p not in tree:
            return None
        tree = tree[p]
    return tree


def _set(tree: Dict[str, Any], path: Tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _leaves(tree: Mapping[str, Any], prefix: Tuple[str, ...] = ()):
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _listing(names: List[str], limit: int = 40) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def check_names_and_shapes(found: Mapping[str, Tuple[int, ...]],
                           expected: Mapping[str, Tuple[int, ...]], what: str,
                           optional: AbstractSet[str] = frozenset()) -> None:
    """Raise :class:`StateDictMismatch` naming every missing, unexpected and misshapen entry.

    ``optional``: expected names that may be absent (e.g. ``num_batches_tracked``).
    """
    missing = [k for k in expected if k not in found and k not in optional]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k])} != {tuple(v)}" for k, v in expected.items()
              if k in found and tuple(found[k]) != tuple(v)]
    problems = [f"{len(items)} {label}: {_listing(items)}" for label, items in
                (("missing", missing), ("unexpected", unexpected),
                 ("with a wrong shape (found != expected)", shapes)) if items]
    if problems:
        raise StateDictMismatch(f"{what}: " + "; ".join(problems))


def hr_channels_of_flax(variables: Mapping[str, Any]) -> int:
    kernel = _get(variables, ("params", "hr_branch", "tohr_enc2x", "layers_0", "kernel"))
    return HR_CHANNELS if kernel is None else int(np.shape(kernel)[-1])


def _owned_f32(arr) -> np.ndarray:
    """A float32, C-contiguous copy (never a view sharing memory with a torch/JAX buffer)."""
    return np.array(arr, dtype=np.float32, order="C", copy=True)


def strip_dataparallel(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """Drop the ``module.`` prefix of ``nn.DataParallel`` files (only when every key has it)."""
    if state_dict and all(k.startswith(DP_PREFIX) for k in state_dict):
        return {k[len(DP_PREFIX):]: v for k, v in state_dict.items()}
    return dict(state_dict)


# ----------------------------------------------------------------------------- directions


def check_release_architecture(lr_branch: Any, hr_channels: Any) -> None:
    """UnsupportedVariant unless the model is the release architecture (se, hr_channels 32)."""
    if lr_branch not in (None, "se"):
        raise UnsupportedVariant(
            f"this checkpoint uses lr_branch={lr_branch!r} (the paper's e-ASPP), which has no "
            "counterpart in the PyTorch release; only lr_branch='se' models can be converted")
    if hr_channels is not None and int(hr_channels) != HR_CHANNELS:
        raise UnsupportedVariant(
            f"this checkpoint has hr_channels={hr_channels}; the release architecture only "
            f"runs with hr_channels={HR_CHANNELS} (its conv_hr4x input width is written as "
            f"3 * hr_channels + 3), so only that width can be converted")


def flax_to_torch(variables: Mapping[str, Any], num_batches_tracked: int = 0,
                  dataparallel: bool = False) -> Dict[str, np.ndarray]:
    """``{"params", "batch_stats"}`` -> the release's ``state_dict`` as numpy arrays (ordered).

    Float tensors are float32 and C-contiguous; ``num_batches_tracked`` is an int64 scalar.
    """
    easpp = _get(variables, ("params", "lr_branch", "easpp")) is not None
    check_release_architecture("easpp" if easpp else "se", hr_channels_of_flax(variables))
    entries = [e for e in modnet_entries() if e.flax_path]
    expected = {"/".join((e.collection,) + e.flax_path): e.flax_shape
                for e in entries if not e.alias}
    found = {"/".join(p): np.shape(v) for c in ("params", "batch_stats")
             for p, v in _leaves({c: variables.get(c, {})})}
    check_names_and_shapes(found, expected, "the Flax variables do not match the release MODNet")
    prefix = DP_PREFIX if dataparallel else ""
    out: Dict[str, np.ndarray] = {}
    for e in modnet_entries():
        if e.layout == "counter":
            out[prefix + e.torch_key] = np.asarray(num_batches_tracked, np.int64)
            continue
        arr = np.asarray(_get(variables[e.collection], e.flax_path))
        perm = TO_FLAX_PERM[e.layout]
        out[prefix + e.torch_key] = _owned_f32(arr.transpose(np.argsort(perm)) if perm else arr)
    return out


def torch_to_flax(state_dict: Mapping[str, Any]) -> Tuple[Dict[str, Any], str]:
    """A ``state_dict`` (numpy arrays) -> (``{"params", "batch_stats"}``, kind).

    kind is ``"modnet"`` (full model; ``module.`` prefix optional) or ``"backbone"`` (a bare
    MobileNetV2 ``features.*`` file: only ``params/backbone`` and ``batch_stats/backbone``
    are returned). The file must match exactly (a strict load), except that
    ``num_batches_tracked`` may be absent; it is ignored. Aliased backbone copies must be equal.
    """
    sd = strip_dataparallel(state_dict)
    if any(k.startswith("features.") for k in sd):
        kind, entries = "backbone", backbone_entries()
        what = "the state_dict does not match the MobileNetV2 backbone (features.*)"
    else:
        kind, entries = "modnet", modnet_entries()
        what = "the state_dict does not match the release MODNet"
    expected = {e.torch_key: e.torch_shape for e in entries}
    optional = {e.torch_key for e in entries if e.layout == "counter"}
    check_names_and_shapes({k: np.shape(v) for k, v in sd.items()}, expected, what, optional)
    differing = [e.torch_key for e in entries if e.alias and e.flax_path and not np.array_equal(
        sd[e.torch_key], sd[e.torch_key[len(ALIAS):]])]
    if differing:
        raise StateDictMismatch(
            f"{what}: the aliased backbone copies differ from backbone.* (they are one module "
            f"in the release): {_listing(differing)}")
    variables: Dict[str, Any] = {"params": {}, "batch_stats": {}}
    for e in entries:
        if e.alias or e.layout == "counter":
            continue
        arr = np.asarray(sd[e.torch_key])
        perm = TO_FLAX_PERM[e.layout]
        _set(variables[e.collection], e.flax_path, _owned_f32(arr.transpose(perm) if perm else arr))
    return variables, kind
