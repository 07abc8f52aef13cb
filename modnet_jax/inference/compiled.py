"""The engine's compiled programs: one per name, static options and argument shapes, compiled
on first use or ahead of it on background threads.

``Programs.run(name, fn, args, static)`` compiles ``fn(*args, **static)`` the first time that
key is seen (``export_cache.compile_flat``: traced, or read back from disk, then compiled or
loaded from the persistent cache) and runs it. ``Programs.prefetch`` with the same key and
abstract arguments (``jax.ShapeDtypeStruct`` with the sharding the real arrays will have)
starts that compile on a background thread instead; ``run`` then waits for it, or compiles
the program itself if its turn has not come yet. Why ahead: on a CPU, tracing the model is
Python on one core while XLA's compile and the model's own run keep both cores busy, so a
photo folder whose landscape model traces while its portrait model compiles (and whose first
photos run while later programs compile) spends less of its start waiting.

A key covers the argument shapes and dtypes and where each argument lives (its device ids
and partition spec; the engine passes its device mesh as a static option wherever one is
used), so a program compiled ahead is the one the real call uses. A compile ahead that fails
is retried by ``run`` when the program is needed (the error then is the real one).

Worker threads finish their queue before the interpreter exits: whoever asks for compiles
ahead and then does not need them calls ``cancel_pending`` (``MattingEngine.images`` does).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, Hashable, List, Optional

import jax
import numpy as np

from modnet_jax.inference.compile_cache import thread_cache_hits
from modnet_jax.inference.export_cache import compile_flat

WORKERS = 2


def _where(x) -> Optional[tuple]:
    """Where an argument lives: its sharding's kind, device ids and partitioning."""
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        return None
    return (type(sharding).__name__, tuple(sorted(d.id for d in sharding.device_set)),
            str(getattr(sharding, "spec", "")))


def program_key(name: str, static: tuple, leaves: List[Any]) -> Hashable:
    """The key of ``name`` with these static options and flattened arguments."""
    return (name, static, tuple((tuple(np.shape(x)), np.dtype(x.dtype).str, _where(x))
                                for x in leaves))


class Programs:
    """Compiled programs and what compiling them cost.

    ``compiled`` / ``loaded``: labels of the programs compiled by XLA / loaded from the
    persistent cache; ``seconds``: the time spent getting them (summed over threads, so it can
    exceed the wall time when compiles ran side by side); ``asked``: how many ``prefetch``
    queued; ``ahead``: how many of those a background thread compiled (or loaded).
    """

    def __init__(self, workers: int = WORKERS):
        self._exe: Dict[Hashable, Any] = {}
        self._pending: Dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self._workers = int(workers)
        self._pool: Optional[ThreadPoolExecutor] = None
        self.compiled: List[str] = []
        self.loaded: List[str] = []
        self.seconds = 0.0
        self.asked = 0
        self.ahead = 0

    def _compile(self, key: Hashable, name: str, fn: Callable, args: tuple, static: tuple,
                 label: str, ahead: bool = False):
        hits, start = thread_cache_hits(), time.perf_counter()
        exe, _ = compile_flat(name, fn, args, static)
        seconds = time.perf_counter() - start
        with self._lock:
            self.seconds += seconds
            self.ahead += ahead
            (self.loaded if thread_cache_hits() > hits else self.compiled).append(
                f"{name} {label}".strip())
            self._exe[key] = exe
        return exe

    def run(self, name: str, fn: Callable, args: tuple, static: tuple = (), label: str = ""):
        """``fn(*args, **dict(static))`` through its compiled program."""
        leaves = jax.tree.leaves(args)
        key = program_key(name, static, leaves)
        exe = self._exe.get(key)
        if exe is None:
            with self._lock:
                future = self._pending.pop(key, None)
            # Queued but not started (cancelled): compiled here, now. Started: waited for; if
            # it failed (from abstract arguments), compiled again here, where a real error
            # is raised.
            if future is not None and not future.cancel():
                try:
                    exe = future.result()
                except Exception:  # noqa: BLE001
                    pass
            if exe is None:
                exe = self._compile(key, name, fn, args, static, label)
        return exe(*leaves)

    def prefetch(self, name: str, fn: Callable, args: tuple, static: tuple = (),
                 label: str = "") -> None:
        """Start compiling what ``run`` with arrays shaped and placed like ``args`` (arrays or
        ``jax.ShapeDtypeStruct`` with a sharding) will need, on a background thread; nothing
        if it is compiled or queued already. Queued compiles run in the order asked for."""
        key = program_key(name, static, jax.tree.leaves(args))
        with self._lock:
            if key in self._exe or key in self._pending:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers,
                                                thread_name_prefix="modnet-compile")
            self._pending[key] = self._pool.submit(self._compile, key, name, fn, args, static,
                                                   label, True)
            self.asked += 1

    def cancel_pending(self) -> None:
        """Drop the compiles asked for ahead that have not started (running ones finish)."""
        with self._lock:
            for key, future in list(self._pending.items()):
                if future.cancel() or future.done():
                    del self._pending[key]

    def join(self) -> None:
        """Wait for every compile asked for ahead that has not been cancelled (their errors
        are left for ``run``)."""
        with self._lock:
            futures = list(self._pending.values())
        for future in futures:
            if not future.cancelled():
                future.exception()

    def keys(self) -> frozenset:
        """Keys of the programs compiled so far."""
        with self._lock:
            return frozenset(self._exe)
