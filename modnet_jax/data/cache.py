"""In-memory cache of decoded source records, so steady-state training stops re-decoding.

A foreground set is small (hundreds to a few thousand subjects) and every epoch decodes
each subject again: at 1080p that is most of a sample's CPU cost. `DecodedCache` wraps a
source and keeps what its `__getitem__` returned, as it returned it (same size, same
pixels: reduced decoding has already brought it to the smallest size that loses nothing),
until a byte budget is used up. Records past the budget are decoded every time, as without
the cache; nothing is evicted (with random access, evicting would only trade one miss for
another). A cached sample is therefore bit-identical to an uncached one; only the cost
changes.

The cache lives in each process: it is emptied when the source is pickled into a Grain
worker, so with N workers the memory use is up to N x the budget (and each worker decodes
a subject once before it hits).

Labelled records {"fg" or "image": [H, W, 3], "alpha": [H, W]} are kept as one
[H, W, 4] array (colour + alpha) and returned as views of it, plus the array itself under
`PACKED_KEY`, so the sample builder can crop and resize colour and matte in one pass
(one 4-channel resize is cheaper than a 3- and a 1-channel one, and gives the same pixels).
Cached arrays are read-only.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

PACKED_KEY = "colour_alpha"  # [H, W, 4] uint8: RGB + alpha of a cached labelled record
_MIB = 2 ** 20


def _colour_key(record) -> str | None:
    """The colour key of a labelled {colour, "alpha"} record, else None."""
    if not isinstance(record, dict) or set(record) not in ({"fg", "alpha"}, {"image", "alpha"}):
        return None
    return "fg" if "fg" in record else "image"


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class DecodedCache:
    """`source` with its records kept in memory up to `max_bytes` per process."""

    def __init__(self, source, max_bytes: int):
        self.source, self.max_bytes = source, int(max_bytes)
        self._init_store()

    def _init_store(self) -> None:
        self._store: dict = {}
        self.used_bytes = 0
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"source": self.source, "max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_store()

    def __len__(self) -> int:
        return len(self.source)

    def __getattr__(self, name):
        # Everything else (e.g. `keys`) is the wrapped source's; guard against recursion
        # while unpickling, before `source` is set.
        if name == "source":
            raise AttributeError(name)
        return getattr(self.source, name)

    def __getitem__(self, index: int):
        index = int(index)
        stored = self._store.get(index)
        if stored is not None:
            self.hits += 1
            return self._unpack(stored)
        self.misses += 1
        record = self.source[index]
        stored = self._pack(record)
        size = self._nbytes(stored)
        with self._lock:
            if index not in self._store and self.used_bytes + size <= self.max_bytes:
                self._store[index] = stored
                self.used_bytes += size
        return self._unpack(stored)

    @staticmethod
    def _pack(record):
        if isinstance(record, dict) and PACKED_KEY in record:  # already packed (records.py)
            key = "fg" if "fg" in record else "image"
            return key, _frozen(np.array(record[PACKED_KEY]))
        key = _colour_key(record)
        if key is not None:
            colour, alpha = record[key], record["alpha"]
            packed = cv2.merge([np.ascontiguousarray(colour), np.ascontiguousarray(alpha)])
            return key, _frozen(packed)
        if isinstance(record, dict):
            return None, {k: _frozen(np.array(v)) for k, v in record.items()}
        return None, _frozen(np.array(record))

    @staticmethod
    def _unpack(stored):
        key, value = stored
        if key is None:
            return dict(value) if isinstance(value, dict) else value
        return {key: value[:, :, :3], "alpha": value[:, :, 3], PACKED_KEY: value}

    @staticmethod
    def _nbytes(stored) -> int:
        value = stored[1]
        return sum(v.nbytes for v in value.values()) if isinstance(value, dict) else value.nbytes


def cached(source, budget_mib: float):
    """`source` wrapped in a DecodedCache of `budget_mib` MiB, or unchanged for a budget <= 0."""
    if source is None or float(budget_mib) <= 0:
        return source
    return DecodedCache(source, int(float(budget_mib) * _MIB))
