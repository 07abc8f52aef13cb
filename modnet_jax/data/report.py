"""Once-only reporting of unusable files (conversion notes: imaging/files.py).

Why a module of its own: the start-up scan, the decoders and the per-sample fallback all find
bad inputs, and the issue asks that each file be reported once, by name, with its reason and
the running count of skipped files. Keeping the bookkeeping here means a file found bad at
start-up and again at decode time is still reported once.

The registry is per process: with multiprocess workers each worker keeps its own, so a file
that fails at decode time can be reported once per worker (start-up findings are reported by
the main process only).
"""

from __future__ import annotations

import logging
import threading

from modnet_jax.imaging.files import UnusableFile, clear_notes

__all__ = ["LOGGER", "DatasetError", "UnusableFile", "clear_reports", "report_skip",
           "skipped_files"]

LOGGER = logging.getLogger("modnet_jax.data")


class DatasetError(RuntimeError):
    """An empty or unusable dataset (raised at start-up, before any compile)."""


# Grain's in-process prefetch runs transforms on threads, hence the lock.
_LOCK = threading.Lock()
_SKIPPED: dict[str, str] = {}


def report_skip(path: str, reason: str) -> bool:
    """Records that `path` is skipped; logs it the first time only. Returns True if new."""
    path = str(path)
    with _LOCK:
        if path in _SKIPPED:
            return False
        _SKIPPED[path] = reason
        count = len(_SKIPPED)
    LOGGER.warning("skipping %s: %s (%d file(s) skipped so far)", path, reason, count)
    return True


def skipped_files() -> dict[str, str]:
    """A copy of {path: reason} for every file skipped so far in this process."""
    with _LOCK:
        return dict(_SKIPPED)


def clear_reports() -> None:
    """Forgets what was reported (tests use it to observe reports from a clean slate)."""
    with _LOCK:
        _SKIPPED.clear()
    clear_notes()
