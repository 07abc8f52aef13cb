"""The prepared dataset: decoded samples in one ArrayRecord file (Grain's random-access format).

    python -m modnet_jax.data.prepare --format arrayrecord --layout adobe \\
        --root /data/adobe/train --output /data/adobe_prepared
    python -m modnet_jax.data.prepare --format arrayrecord --layout images \\
        --root /data/bg20k/train --output /data/bg20k_prepared
    training: --config.data.layout=prepared --config.data.root=/data/adobe_prepared
              --config.data.bg_root=/data/bg20k_prepared

A folder holds `samples.array_record` (one record per sample, in the order of the source
scan) and `prepared.json` (what it holds: the source layout's kind, the count, the short
side). A record is a small header (magic, rows, cols, channels) and the uint8 pixels,
uncompressed: labelled samples as [H, W, 4] (RGB + matte, upright, resized like
`prepare`'s other formats), images as [H, W, 3]. Reading a sample is one read of its bytes
and a zero-copy view: no decoding, and the colour + matte pair is already the packed array
the sample builder crops in one pass (as with data.sample_cache_mb). Disk use is that of
`--format raw` (768 x 1365: 4.2 MB a labelled sample, 3.1 MB an image).
"""

from __future__ import annotations

import json
import os
import struct

import grain
import numpy as np

from modnet_jax.data.cache import PACKED_KEY
from modnet_jax.data.report import DatasetError, UnusableFile

RECORDS = "samples.array_record"
META = "prepared.json"
KINDS = ("fg_alpha", "image_matte", "images")
_MAGIC = b"MJR1"
_HEADER = struct.Struct("<4sHHB")
WRITER_OPTIONS = "group_size:1,uncompressed"  # one record per chunk: true random access


def encode(array: np.ndarray) -> bytes:
    """uint8 [H, W] or [H, W, C] -> one record."""
    array = np.ascontiguousarray(array, np.uint8)
    channels = array.shape[2] if array.ndim == 3 else 1
    return _HEADER.pack(_MAGIC, array.shape[0], array.shape[1], channels) + array.tobytes()


def decode_record(payload: bytes, where: str = "record") -> np.ndarray:
    """One record -> read-only uint8 [H, W, C] view of its bytes; UnusableFile if malformed."""
    if len(payload) < _HEADER.size:
        raise UnusableFile(where, "record too short for its header")
    magic, rows, cols, channels = _HEADER.unpack_from(payload)
    if magic != _MAGIC or len(payload) != _HEADER.size + rows * cols * channels:
        raise UnusableFile(where, f"not a prepared sample record ({len(payload)} bytes)")
    return np.frombuffer(payload, np.uint8, offset=_HEADER.size).reshape(rows, cols, channels)


def read_meta(folder: str) -> dict:
    """prepared.json of a prepared folder; DatasetError when it is not one."""
    path = os.path.join(folder, META)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(folder, RECORDS)):
        raise DatasetError(f"{folder} is not a prepared dataset (no {META} + {RECORDS}; write one "
                           "with python -m modnet_jax.data.prepare --format arrayrecord)")
    with open(path) as handle:
        meta = json.load(handle)
    if meta.get("kind") not in KINDS:
        raise DatasetError(f"{path}: unknown kind {meta.get('kind')!r}")
    return meta


def is_prepared(folder: str | None) -> bool:
    return bool(folder) and os.path.isfile(os.path.join(folder, META))


class PreparedSource:
    """Records `indices` (default all) of a prepared folder: labelled ones as
    {"fg" or "image": [H, W, 3], "alpha": [H, W], PACKED_KEY: [H, W, 4]} views,
    `images=True` ones as [H, W, 3] arrays (backgrounds)."""

    def __init__(self, folder: str, indices=None, images: bool = False):
        self.folder = folder
        meta = read_meta(folder)
        self.kind = meta["kind"]
        if images != (self.kind == "images"):
            want = "images (prepare --layout images)" if images else "labelled samples"
            raise DatasetError(f"{folder} holds {self.kind} records, not {want}")
        self.colour_key = "fg" if self.kind == "fg_alpha" else "image"
        self.keys = (self.colour_key, "alpha")
        self._records = grain.sources.ArrayRecordDataSource([os.path.join(folder, RECORDS)])
        count = len(self._records)
        if count != int(meta["count"]):
            raise DatasetError(f"{folder}: {count} records but {META} says {meta['count']}; "
                               "prepare it again")
        self.indices = np.arange(count) if indices is None else np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        position = int(self.indices[int(index)])
        where = f"{os.path.join(self.folder, RECORDS)}[{position}]"
        array = decode_record(self._records[position], where)
        if self.kind == "images":
            return array
        return {self.colour_key: array[:, :, :3], "alpha": array[:, :, 3], PACKED_KEY: array}


def check(folder: str, expected: int, max_short_side: int, progress=None) -> list:
    """Reads every record back: returns the problems found (count, header, sizes)."""
    meta = read_meta(folder)
    channels = 3 if meta["kind"] == "images" else 4
    records = grain.sources.ArrayRecordDataSource([os.path.join(folder, RECORDS)])
    problems = []
    if len(records) != expected or int(meta["count"]) != expected:
        problems.append(f"{len(records)} records, {META} says {meta['count']}, {expected} written")
    for position in range(len(records)):
        try:
            array = decode_record(records[position], f"record {position}")
        except UnusableFile as err:
            problems.append(f"{err.path}: {err.reason}")
            continue
        if array.shape[2] != channels or min(array.shape[:2]) > max_short_side:
            problems.append(f"record {position}: shape {array.shape} (expected {channels} "
                            f"channels, short side <= {max_short_side})")
        if progress is not None:
            progress()
    return problems
