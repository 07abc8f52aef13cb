"""Stored traces of the engine's programs, so that a later run skips tracing and lowering.

Why: JAX's persistent compilation cache saves the compile, but it is looked up by the lowered
program, so every new process still traces each ``jax.jit`` program (for the model: Flax's
whole module tree with the canvas interceptor) and lowers it before it can hit that cache. On
a warm folder run that tracing is most of the time left (benchmarks/RESULTS.md, "trace
cache"). This module keeps each program's trace with JAX's public ``jax.export``: the first
call for a key exports the program and writes the serialized export; a later process reads it
back and runs it (``jax.jit`` of ``Exported.call``) without tracing the Python code, and its
compile then comes from the persistent cache.

The key is what the trace depends on, nothing else: the program's name, its static arguments
(the model's configuration, the mesh's shape and devices), the inputs' tree, shapes, dtypes
and shardings, the JAX and jaxlib versions, the backend and device count, and the source of
the modules the computation is made of (``modnet_jax/models/*.py``, ``programs.py`` and this
file). Editing a help string or a CLI does not change it.

The folder sits beside JAX's persistent cache (``<cache dir>-traces``), and the trace cache
is on exactly when that cache is (``--compile-cache none`` turns both off);
``MODNET_JAX_TRACE_CACHE=off`` turns only this one off. Entries are written atomically; an
entry that cannot be read, or that no longer fits, is traced again and replaced. Nothing here
ever fails a run: any problem falls back to the plain jitted program.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
from typing import Any, Callable, Dict, Optional

import jax
import jaxlib
import numpy as np
from jax.sharding import Mesh, NamedSharding

from modnet_jax.imaging.output import atomic_write

ENV_VAR = "MODNET_JAX_TRACE_CACHE"
FORMAT = "1"  # bump when the entry layout or the key's recipe changes
LOGGER = logging.getLogger(__name__)


def folder() -> Optional[str]:
    """Where entries live, or None when the trace cache is off."""
    if os.environ.get(ENV_VAR, "").strip().lower() in ("none", "off", "0", "false"):
        return None
    base = jax.config.jax_compilation_cache_dir
    if not (jax.config.jax_enable_compilation_cache and base) or "://" in base:
        return None
    return os.path.abspath(base).rstrip(os.sep) + "-traces"


@functools.lru_cache(maxsize=None)
def _source_digest() -> str:
    """sha256 of the source the traced computations are made of."""
    import modnet_jax.models as models

    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(os.path.dirname(models.__file__), "*.py")))
    files += [os.path.join(here, "programs.py"), os.path.abspath(__file__)]
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            digest.update(os.path.basename(path).encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest()


def _static_text(value: Any) -> Optional[str]:
    """A stable description of a static argument, or None if it has none (then no caching)."""
    if isinstance(value, Mesh):
        return f"Mesh({dict(value.shape)}, {value.device_ids.tolist()})"
    text = repr(value)
    return None if " at 0x" in text else text


def _sharding_text(sharding: Any) -> str:
    """An input's placement: "host" (not a device array), its devices, or its mesh split."""
    if sharding is False:
        return "host"
    if isinstance(sharding, NamedSharding):
        return f"named({_static_text(sharding.mesh)}, {sharding.spec})"
    return f"devices{sorted(d.id for d in sharding.device_set)}"


def _spec(leaf: Any) -> jax.ShapeDtypeStruct:
    weak = isinstance(leaf, (bool, int, float, complex))
    arr = leaf if hasattr(leaf, "dtype") else np.asarray(leaf)
    sharding = leaf.sharding if isinstance(leaf, jax.Array) else None
    if sharding is not None and not isinstance(sharding, NamedSharding):
        sharding = None  # one device: the export is device-free, the call places it
    return jax.ShapeDtypeStruct(arr.shape, arr.dtype, sharding=sharding,
                                weak_type=weak or bool(getattr(leaf, "weak_type", False)))


class TraceCached:
    """``jitted`` (a ``jax.jit`` function), called through its stored trace when the trace
    cache is on; otherwise, or on any problem with an entry, ``jitted`` itself."""

    def __init__(self, jitted: Callable, name: str):
        self.jitted, self.name = jitted, name
        self._loaded: Dict[Any, Callable] = {}  # in-memory key -> runnable (or jitted)
        functools.update_wrapper(self, jitted)

    def __call__(self, *args, **static):
        where = folder()
        if where is None:
            return self.jitted(*args, **static)
        leaves, tree = jax.tree.flatten(args)
        try:
            memo = (tuple(sorted(static.items())), tree,
                    tuple((np.shape(x), str(getattr(x, "dtype", type(x))),
                           isinstance(x, jax.Array) and x.sharding) for x in leaves))
            run = self._loaded.get(memo)
        except TypeError:  # an unhashable static argument: jit would refuse it too
            return self.jitted(*args, **static)
        if run is not None:
            return run(*args)
        run = self._load(where, memo, leaves, tree, static)
        try:
            out = run(*args)
        except Exception as err:  # noqa: BLE001 - e.g. a stored export the call refuses
            LOGGER.debug("trace cache: %s runs without it (%s)", self.name, err)
            run = self._plain(static)
            out = run(*args)
        self._loaded[memo] = run
        return out

    def _key(self, memo, static) -> Optional[str]:
        texts = [_static_text(v) for _, v in memo[0]]
        if any(t is None for t in texts):
            return None
        parts = [FORMAT, self.name, jax.__version__, jaxlib.__version__, jax.default_backend(),
                 str(jax.device_count()), _source_digest(), str(memo[1]),
                 repr([(shape, dtype, _sharding_text(at)) for shape, dtype, at in memo[2]]),
                 repr([(k, t) for (k, _), t in zip(memo[0], texts)])]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _load(self, where, memo, leaves, tree, static) -> Callable:
        """The runnable for one key: the stored export, else a fresh one (stored)."""
        key = self._key(memo, static)
        if key is None:
            return self._plain(static)
        path = os.path.join(where, f"{self.name}-{key[:40]}.jaxexport")
        exported = None
        try:
            with open(path, "rb") as handle:
                exported = jax.export.deserialize(bytearray(handle.read()))
        except FileNotFoundError:
            pass
        except Exception as err:  # noqa: BLE001 - an unreadable entry is traced again
            LOGGER.debug("trace cache: %s unreadable (%s); tracing again", path, err)
        if exported is not None and exported.in_tree != jax.tree.structure((tuple(leaves), {})):
            exported = None
        if exported is None:
            try:
                exported = jax.export.export(jax.jit(self._flat(tree, static)))(
                    *[_spec(x) for x in leaves])
            except Exception as err:  # noqa: BLE001 - some programs cannot be exported
                LOGGER.debug("trace cache: %s not exported (%s)", self.name, err)
                return self._plain(static)
            try:
                os.makedirs(where, exist_ok=True)
                atomic_write(path, bytes(exported.serialize()))
            except OSError as err:
                LOGGER.debug("trace cache: %s not written (%s)", path, err)
        call = jax.jit(exported.call)
        return lambda *args: call(*jax.tree.leaves(args))

    def _flat(self, tree, static) -> Callable:
        """The program as a function of its flat input leaves (no custom pytree to store)."""
        return lambda *leaves: self.jitted(*jax.tree.unflatten(tree, leaves), **static)

    def _plain(self, static) -> Callable:
        return lambda *args: self.jitted(*args, **static)


def trace_cached(jitted: Callable) -> TraceCached:
    """Decorator for a module-level ``jax.jit`` program (see the module)."""
    return TraceCached(jitted, jitted.__name__)
