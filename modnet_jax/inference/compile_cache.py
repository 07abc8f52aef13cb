"""JAX's persistent compilation cache for inference, and counters of compiles and cache hits.

Compiled XLA programs are kept on disk so that a second run with the same input shapes
compiles nothing (the first run of a new shape still does). Where (first match wins):

1. the ``cache_dir`` argument / ``--compile-cache DIR`` (``none`` turns the cache off);
2. the environment variable ``MODNET_JAX_COMPILE_CACHE`` (same values);
3. ``$XDG_CACHE_HOME/modnet_jax/jax``, else ``~/.cache/modnet_jax/jax``.

If JAX's own ``jax_compilation_cache_dir`` is already set (e.g. by ``JAX_COMPILATION_CACHE_DIR``
or a test harness), it is left as it is unless a folder is asked for explicitly.
The cache is keyed by the program, the JAX/XLA version and the device, so a stale entry is
never used; deleting the folder is always safe.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import jax

from modnet_jax.inference.options import COMPILE_CACHE_ENV as ENV_VAR
from modnet_jax.inference.options import default_cache_dir  # noqa: F401 (re-exported)

_DISABLED = ("none", "off", "0", "")

_lock = threading.Lock()
_hits = 0
_thread = threading.local()  # this thread's hits: compiles run on several threads at once


def _on_event(event: str, **_kwargs) -> None:
    global _hits
    if event == "/jax/compilation_cache/cache_hits":
        with _lock:
            _hits += 1
        _thread.hits = getattr(_thread, "hits", 0) + 1


def cache_hits() -> int:
    """Programs loaded from the persistent cache in this process so far."""
    return _hits


def thread_cache_hits() -> int:
    """Programs this thread loaded from the persistent cache so far (JAX reports a hit on the
    thread that compiles, so this tells which of several concurrent compiles were hits)."""
    return getattr(_thread, "hits", 0)


jax.monitoring.register_event_listener(_on_event)


def setup_compile_cache(cache_dir: Optional[str] = None) -> Optional[str]:
    """Turn the persistent cache on; returns the folder in use, or None when it is off."""
    explicit = cache_dir is not None
    choice = cache_dir if explicit else os.environ.get(ENV_VAR)
    current = jax.config.jax_compilation_cache_dir
    if choice is not None and choice.strip().lower() in _DISABLED:
        if explicit or current is None:
            jax.config.update("jax_enable_compilation_cache", False)
            return None
        return current
    if choice is None and current:
        folder = current
    else:
        folder = os.path.abspath(os.path.expanduser(choice or default_cache_dir()))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            return None  # an unwritable cache only costs compile time
        jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_enable_compilation_cache", True)
    # Keep every program, small resize programs included (JAX's default skips those < 1 s).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
