"""Raw images: the uint8 ``.npy`` arrays that ``python -m modnet_jax.data.prepare --format raw``
writes (RGB [H, W, 3] or matte [H, W]), memory-mapped read-only instead of decoded, so reading
one costs page copies of the rows a crop touches.

A file is raw by its content (the ``\\x93NUMPY`` signature), whatever its name. Its header is
checked like a PNG/JPEG header (dtype, layout, length) once per process and remembered.
"""

from __future__ import annotations

import io
import mmap
import os

import numpy as np

from modnet_jax.imaging.files import RAW_EXTENSION, UnusableFile, extension
from modnet_jax.imaging.signatures import HEAD_BYTES, kind_from_head

_LAYOUTS: dict = {}  # path -> (data offset, shape): .npy headers parsed once


def _read_header(path: str, handle) -> tuple:
    """(shape, fortran order, dtype) from a .npy header; UnusableFile when there is none."""
    try:
        version = np.lib.format.read_magic(handle)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        return read(handle)
    except ValueError as err:
        raise UnusableFile(path, f"not a .npy array file ({err})") from err


def shape_from_bytes(path: str, data: bytes) -> tuple:
    """The array shape a .npy file's bytes declare (no layout checks)."""
    return tuple(int(n) for n in _read_header(path, io.BytesIO(data[:4096]))[0])


def known(path: str) -> bool:
    """Whether `path` was already read as a raw array in this process."""
    return path in _LAYOUTS


def is_raw(path: str) -> bool:
    """Whether a file holds a .npy array (by content; only files named .npy are opened to
    see, the others show it in the bytes their reader reads anyway)."""
    if path in _LAYOUTS:
        return True
    if extension(path) != RAW_EXTENSION:
        return False
    try:
        with open(path, "rb") as handle:
            return kind_from_head(handle.read(HEAD_BYTES)) == "npy"
    except OSError:
        return False


def layout(path: str) -> tuple:
    """(data offset, shape) of a raw image, checking dtype, layout and file length; cached
    per process (parsing a .npy header costs more than mapping the file)."""
    found = _LAYOUTS.get(path)
    if found is not None:
        return found
    try:
        with open(path, "rb") as handle:
            shape, fortran, dtype = _read_header(path, handle)
            offset = handle.tell()
            size = handle.seek(0, os.SEEK_END)
    except OSError as err:
        raise UnusableFile(path, f"cannot read ({err.strerror or err})") from err
    if dtype != np.uint8 or fortran or len(shape) not in (2, 3) or \
            (len(shape) == 3 and shape[2] not in (1, 3)) or min(shape[:2]) == 0:
        raise UnusableFile(path, f"raw image must be uint8 [H, W] or [H, W, 3] in C order, "
                           f"not {dtype} {shape}{' (Fortran order)' if fortran else ''}")
    if size - offset < int(np.prod(shape)):
        raise UnusableFile(path, "truncated .npy file (fewer bytes than its shape needs)")
    _LAYOUTS[path] = offset, tuple(int(n) for n in shape)
    return _LAYOUTS[path]


def channels_of(shape: tuple) -> int:
    return 1 if len(shape) == 2 else int(shape[2])


def load(path: str, channels: int) -> np.ndarray:
    """A raw image, memory-mapped read-only: uint8 [H, W, 3] for channels=3, [H, W] for
    channels=1."""
    offset, shape = layout(path)
    if channels_of(shape) != channels:
        what = "an RGB image [H, W, 3]" if channels == 3 else "a matte [H, W]"
        raise UnusableFile(path, f"raw file has {channels_of(shape)} channel(s); expected "
                           f"{what}")
    try:
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        array = np.frombuffer(mapped, np.uint8, int(np.prod(shape)), offset)
    except (OSError, ValueError) as err:  # e.g. the file shrank since its header was read
        _LAYOUTS.pop(path, None)
        raise UnusableFile(path, f"cannot map the .npy file ({err})") from err
    return array.reshape((shape[0], shape[1], 3) if channels == 3 else shape[:2])
