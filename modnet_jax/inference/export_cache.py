"""Traced programs kept on disk next to the compile cache, so a warm run does not re-trace.

The persistent compile cache (``compile_cache.py``) spares XLA's compilation, but finding the
cache entry still needs the program's HLO, i.e. tracing the model in Python: about a second
or more per program on a 2-core CPU, paid again in every run. This module keeps each
program's ``jax.export`` serialisation (StableHLO, without the weights: they stay arguments)
in ``<compile cache>/exported``; a later run deserialises it and compiles that (a compile
cache hit) instead of tracing. Tracing the exported program instead of the original one gives
the same XLA program, so the results are the same.

An entry's name hashes everything its trace depends on: the program's name and static
options (the model's configuration among them), the argument tree with every shape and dtype
(the weights' tree included), the JAX version and backend, and the source of the whole
``modnet_jax`` package (so an edited model or program is re-traced, never a stale one run).
An unreadable entry is traced anew; with the compile cache off nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import jax
import numpy as np


@lru_cache(maxsize=1)
def source_signature() -> str:
    """Hash of every ``.py`` file of the ``modnet_jax`` package."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def export_dir() -> Optional[str]:
    """``<compile cache>/exported``, or None while JAX's persistent cache is off."""
    folder = jax.config.jax_compilation_cache_dir
    if not (jax.config.jax_enable_compilation_cache and folder):
        return None
    return os.path.join(folder, "exported")


def _file_name(name: str, key: tuple, suffix: str) -> str:
    """``<name>-<hash><suffix>``, the hash covering ``key``, the JAX version and backend and
    the package's source (an edited package never reads an old entry)."""
    text = repr((name, key, jax.__version__, jax.default_backend(), source_signature()))
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:32]}{suffix}"


def entry_name(name: str, static: tuple, treedef, leaves) -> str:
    shapes = tuple((np.shape(x), np.dtype(x.dtype).str) for x in leaves)
    return _file_name(name, (static, str(treedef), shapes), ".jaxexport")


def _read(path: str):
    try:
        with open(path, "rb") as f:
            return jax.export.deserialize(bytearray(f.read()))
    except Exception:  # noqa: BLE001 - any damage: trace anew
        return None


def _write(path: str, blob: bytes) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs tracing time


def cached_json(name: str, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` (JSON-serialisable), kept in ``<export dir>/<name>-<hash>.json`` where the
    hash covers ``key``, the JAX version and backend and the package source; recomputed when
    absent or unreadable, and not kept while the compile cache is off."""
    folder = export_dir()
    if folder is None:
        return compute()
    path = os.path.join(folder, _file_name(name, (key,), ".json"))
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    value = compute()
    _write(path, json.dumps(value).encode())
    return value


def compile_flat(name: str, fn: Callable, args: tuple, static: tuple = ()
                 ) -> Tuple[Callable, bool]:
    """(compiled program taking the leaves of ``args``, whether it came from disk).

    ``fn(*args, **dict(static))`` is traced (or read back from disk), lowered and compiled.
    """
    leaves, treedef = jax.tree.flatten(args)
    bound = partial(fn, **dict(static))

    def flat(*xs: Any):
        return bound(*jax.tree.unflatten(treedef, xs))

    folder = export_dir()
    if folder is None:
        return jax.jit(flat).lower(*leaves).compile(), False
    path = os.path.join(folder, entry_name(name, static, treedef, leaves))
    exported = _read(path) if os.path.exists(path) else None
    loaded = exported is not None
    if exported is None:
        exported = jax.export.export(jax.jit(flat))(*leaves)
        _write(path, exported.serialize())
    return jax.jit(exported.call).lower(*leaves).compile(), loaded
