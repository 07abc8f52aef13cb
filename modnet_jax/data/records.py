"""The prepared dataset: decoded samples in one ArrayRecord file (Grain's random-access format).

    python -m modnet_jax.data.prepare --format arrayrecord --layout adobe \\
        --root /data/adobe/train --output /data/adobe_prepared
    python -m modnet_jax.data.prepare --format arrayrecord --layout images \\
        --root /data/bg20k/train --output /data/bg20k_prepared
    training: --config.data.layout=prepared --config.data.root=/data/adobe_prepared
              --config.data.bg_root=/data/bg20k_prepared

A folder holds `samples.array_record`, `shapes.npy` (int32 [count, 3]: rows, cols, channels
of each sample, in the order of the source scan) and `prepared.json` (what it holds: the
source layout's kind, the count, the short side, the strip width). Pixels are uint8,
uncompressed, upright and resized like `prepare`'s other formats: labelled samples as
[H, W, 4] (RGB + matte), images as [H, W, 3].

Each sample is cut into strips of `STRIP` pixels across its long axis (columns of a
landscape image, rows of a portrait one), one record per strip, so that reading a square
crop reads only the strips it touches (about half of a 16:9 image for the crops training
takes) rather than the whole sample: ArrayRecord's reader copies and checksums every byte
it returns, and that, not the disk, is the host's main cost on this path. A sample reads
as a `StripArray`, which behaves as a read-only numpy array for basic slicing and reads its
strips on first use: the subject-biased crop search looks at a few small boxes of the
matte, the crop then reads the strips under the window. Records are checked once, when
`prepare` writes them (every record read back: count, sizes); opening a folder checks only
that the number of records matches the shapes, and reading a strip only its length.
"""

from __future__ import annotations

import json
import os

import numpy as np

from modnet_jax.data.cache import PACKED_KEY
from modnet_jax.data.report import DatasetError, UnusableFile

RECORDS = "samples.array_record"
SHAPES = "shapes.npy"
META = "prepared.json"
KINDS = ("fg_alpha", "image_matte", "images")
FORMAT = 2      # prepared.json "format": strips of STRIP pixels (1 was one record a sample)
STRIP = 64
WRITER_OPTIONS = "group_size:1,uncompressed"  # one record per chunk: true random access


def long_axis(rows: int, cols: int) -> int:
    """The axis a sample is cut across: 1 (columns) unless it is taller than wide."""
    return 0 if rows > cols else 1


def strip_count(rows: int, cols: int, strip: int = STRIP) -> int:
    return -(-(rows if long_axis(rows, cols) == 0 else cols) // strip)


def encode(array: np.ndarray, strip: int = STRIP) -> list:
    """uint8 [H, W] or [H, W, C] -> its strips' records (bytes), in order."""
    array = np.asarray(array, np.uint8)
    array = array.reshape(array.shape[:2] + (-1,))
    axis = long_axis(*array.shape[:2])
    length = array.shape[axis]
    return [np.ascontiguousarray(array[start:start + strip] if axis == 0 else
                                 array[:, start:start + strip]).tobytes()
            for start in range(0, length, strip)]


def strip_shape(shape, index: int, strip: int = STRIP) -> tuple:
    """(rows, cols, channels) of strip `index` of a sample of `shape`."""
    rows, cols, channels = shape
    axis = long_axis(rows, cols)
    length = (rows, cols)[axis]
    width = min(strip, length - index * strip)
    return (width, cols, channels) if axis == 0 else (rows, width, channels)


def decode_strip(payload: bytes, shape: tuple, where: str = "record") -> np.ndarray:
    """One strip's record -> read-only uint8 view of shape `shape`; UnusableFile if its
    length does not match."""
    if len(payload) != shape[0] * shape[1] * shape[2]:
        raise UnusableFile(where, f"record of {len(payload)} bytes, expected a {shape} strip "
                           "(the file changed after prepare checked it: prepare it again)")
    return np.frombuffer(payload, np.uint8).reshape(shape)


class _Reader:
    """ArrayRecord's reader of one file, opened in the process that first reads (it does
    not pickle; Grain workers each open their own). Thread-safe (ArrayRecord's reader is).
    No read-ahead, a small file buffer (as Grain's ArrayRecordDataSource opens it: true
    random access), and one record per call, in the calling thread: a list read would
    hand the records to ArrayRecord's thread pool for the same CPU time, and a Grain
    worker is meant to use one core."""

    OPTIONS = "readahead_buffer_size:0,max_parallelism:0"
    BUFFER = 32768

    def __init__(self, path: str):
        self.path, self._reader = path, None

    def __getstate__(self):
        return {"path": self.path, "_reader": None}

    def __len__(self) -> int:
        return int(self._open().num_records())

    def _open(self):
        if self._reader is None:
            from array_record.python.array_record_module import ArrayRecordReader

            self._reader = ArrayRecordReader(self.path, self.OPTIONS,
                                             file_reader_buffer_size=self.BUFFER)
        return self._reader

    def read(self, positions: list) -> list:
        reader = self._open()
        return [reader.read([position])[0] for position in positions]

    def __getitem__(self, position: int) -> bytes:
        return self.read([int(position)])[0]


class _Strips:
    """The strips of one sample, read on first use (those a slice needs, in one read) and
    kept for the sample's lifetime."""

    def __init__(self, records, first: int, shape: tuple, strip: int, where: str):
        self.records, self.first, self.shape, self.strip = records, first, shape, strip
        self.axis = long_axis(shape[0], shape[1])
        self.where = where
        self.loaded: dict = {}

    def load(self, indices: range) -> None:
        missing = [index for index in indices if index not in self.loaded]
        if not missing:
            return
        positions = [self.first + index for index in missing]
        read = getattr(self.records, "read", None)
        payloads = read(positions) if read else [self.records[p] for p in positions]
        for index, position, payload in zip(missing, positions, payloads):
            self.loaded[index] = decode_strip(payload, strip_shape(self.shape, index, self.strip),
                                              f"{self.where}[{position}]")

    def pieces(self, rows: slice, cols: slice, channels) -> list:
        """Views of the strips holding rows x cols (step 1 slices within bounds), in order
        along the long axis."""
        along, across = (rows, cols) if self.axis == 0 else (cols, rows)
        lo, hi = along.start, along.stop
        indices = range(lo // self.strip, max(lo, hi - 1) // self.strip + 1)
        self.load(indices)
        pieces = []
        for index in indices:
            base = index * self.strip
            part = slice(max(lo, base) - base, min(hi, base + self.strip) - base)
            key = (part, across) if self.axis == 0 else (across, part)
            pieces.append(self.loaded[index][key + (channels,)])
        return pieces

    def region(self, rows: slice, cols: slice, channels) -> np.ndarray:
        """As `pieces`, joined: a view when one strip holds them, else a copy of just
        those pixels."""
        pieces = self.pieces(rows, cols, channels)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=self.axis)


class StripArray:
    """A sample (or one channel, or the colour channels of it) as a read-only array that
    reads its strips when first sliced. Supports `shape`, `ndim`, `nbytes`, `np.asarray`
    (reads everything) and basic indexing of the two image axes (slices, with steps) and
    optionally the channel axis, returning numpy arrays."""

    dtype = np.dtype(np.uint8)

    def __init__(self, strips: _Strips, channels=slice(None)):
        self._strips, self._channels = strips, channels
        rows, cols, count = strips.shape
        if isinstance(channels, int):
            self.shape = (rows, cols)
        else:
            self.shape = (rows, cols, len(range(count)[channels]))

    def window(self, y0: int, x0: int, side: int) -> tuple:
        """(axis, views) of the square side x side at (y0, x0), within the image: the
        pieces of its strips along `axis`, uncopied (recipe.precrop hands them on as is
        and copies them once, into the batch)."""
        rows, cols = slice(y0, y0 + side), slice(x0, x0 + side)
        if not (0 <= y0 and y0 + side <= self.shape[0] and 0 <= x0 and x0 + side <= self.shape[1]):
            raise IndexError(f"window {rows}, {cols} outside an image of shape {self.shape}")
        return self._strips.axis, self._strips.pieces(rows, cols, self._channels)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        full = self[:, :]
        return full if dtype is None else full.astype(dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3 or (len(key) == 3 and self.ndim == 2) or \
                not all(isinstance(k, slice) for k in key[:2]):
            raise IndexError("StripArray supports slices of the two image axes (and a channel "
                             "index or slice)")
        rows, cols = (tuple(key[:2]) + (slice(None),) * 2)[:2]
        spans = []
        for part, length in ((rows, self.shape[0]), (cols, self.shape[1])):
            start, stop, step = part.indices(length)
            stop = max(start, stop) if step > 0 else stop
            if step < 1:
                raise IndexError("StripArray slices need a positive step")
            spans.append((slice(start, stop), step))
        (row_span, row_step), (col_span, col_step) = spans
        if row_span.stop <= row_span.start or col_span.stop <= col_span.start:
            out = np.zeros((0, 0) + self.shape[2:], np.uint8)
        else:
            out = self._strips.region(row_span, col_span, self._channels)
        if row_step > 1 or col_step > 1:
            out = out[::row_step, ::col_step]
        return out[(slice(None), slice(None)) + key[2:]] if len(key) == 3 else out


def read_meta(folder: str) -> dict:
    """prepared.json of a prepared folder; DatasetError when it is not one."""
    path = os.path.join(folder, META)
    if not all(os.path.isfile(os.path.join(folder, name)) for name in (META, RECORDS, SHAPES)):
        raise DatasetError(f"{folder} is not a prepared dataset (no {META} + {RECORDS} + "
                           f"{SHAPES}; write one with python -m modnet_jax.data.prepare "
                           "--format arrayrecord)")
    with open(path) as handle:
        meta = json.load(handle)
    if meta.get("kind") not in KINDS:
        raise DatasetError(f"{path}: unknown kind {meta.get('kind')!r}")
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{path}: written by an older version (format "
                           f"{meta.get('format', 1)}, this one reads {FORMAT}); prepare it again")
    return meta


def is_prepared(folder: str | None) -> bool:
    return bool(folder) and os.path.isfile(os.path.join(folder, META))


def _layout(folder: str, meta: dict, records) -> tuple:
    """(shapes, first record of each sample); DatasetError unless the counts agree."""
    shapes = np.load(os.path.join(folder, SHAPES))
    strip = int(meta["strip"])
    counts = [strip_count(int(r), int(c), strip) for r, c, _ in shapes]
    first = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    if len(shapes) != int(meta["count"]) or first[-1] != len(records):
        raise DatasetError(f"{folder}: {len(records)} records for {len(shapes)} samples of "
                           f"{int(first[-1])} strips ({META} says {meta['count']} samples); "
                           "prepare it again")
    return shapes, first


class PreparedSource:
    """Samples `indices` (default all) of a prepared folder: labelled ones as
    {"fg" or "image": [H, W, 3], "alpha": [H, W], PACKED_KEY: [H, W, 4]}, `images=True`
    ones (backgrounds) as [H, W, 3]; each a `StripArray` that reads what is sliced."""

    def __init__(self, folder: str, indices=None, images: bool = False):
        self.folder = folder
        meta = read_meta(folder)
        self.kind, self.strip = meta["kind"], int(meta["strip"])
        if images != (self.kind == "images"):
            want = "images (prepare --layout images)" if images else "labelled samples"
            raise DatasetError(f"{folder} holds {self.kind} records, not {want}")
        self.colour_key = "fg" if self.kind == "fg_alpha" else "image"
        self.keys = (self.colour_key, "alpha")
        self._records = _Reader(os.path.join(folder, RECORDS))
        self._shapes, self._first = _layout(folder, meta, self._records)
        count = len(self._shapes)
        self.indices = np.arange(count) if indices is None else np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        position = int(self.indices[int(index)])
        shape = tuple(int(v) for v in self._shapes[position])
        strips = _Strips(self._records, int(self._first[position]), shape, self.strip,
                         os.path.join(self.folder, RECORDS))
        if self.kind == "images":
            return StripArray(strips)
        return {self.colour_key: StripArray(strips, slice(0, 3)), "alpha": StripArray(strips, 3),
                PACKED_KEY: StripArray(strips)}


def check(folder: str, expected: int, max_short_side: int) -> list:
    """Reads every record back: returns the problems found (counts, strip sizes, shapes)."""
    try:
        meta = read_meta(folder)
        records = _Reader(os.path.join(folder, RECORDS))
        shapes, first = _layout(folder, meta, records)
    except DatasetError as err:
        return [str(err)]
    channels = 3 if meta["kind"] == "images" else 4
    problems = []
    if len(shapes) != expected:
        problems.append(f"{len(shapes)} samples, {expected} written")
    for sample, shape in enumerate(shapes):
        shape = tuple(int(v) for v in shape)
        if shape[2] != channels or min(shape[:2]) > max_short_side:
            problems.append(f"sample {sample}: shape {shape} (expected {channels} channels, "
                            f"short side <= {max_short_side})")
        for index in range(int(first[sample + 1] - first[sample])):
            position = int(first[sample]) + index
            try:
                decode_strip(records[position], strip_shape(shape, index, int(meta["strip"])),
                             f"record {position}")
            except UnusableFile as err:
                problems.append(f"{err.path}: {err.reason}")
    return problems
