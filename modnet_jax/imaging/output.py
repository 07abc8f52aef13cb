"""Writing result files: whole or not at all, with the operating system's own reason on failure.

* `atomic_write(path, data)` writes to a temporary name in the same folder
  (``.<name>.<pid>-<random>.part<ext>``: hidden, and keeping the extension for writers that
  pick a format by it), then renames it over ``path`` (``os.replace``, atomic within one
  filesystem). A reader, or a second process writing the same name, sees the old file or the
  new one, never a part of one; a failure (a full disk, a killed write) removes the temporary
  file, so nothing half-written is left under the real name. A killed process (SIGKILL) can
  leave a hidden ``.part`` file, never a truncated result.
* `write_image(path, bgr)` encodes with OpenCV by the extension, then `atomic_write`;
  `write_text(path, text)` likewise for reports (CSV, JSON).
* `append_whole(path, data)` adds a record to a log (``metrics.jsonl``): all of it or, when
  the write fails, none of it (the file is cut back to its length before).
* `make_folders(path)`: ``os.makedirs`` whose failure is a `WriteError` too.
* `atomic_path(path)` (a context manager) for writers that need a path of their own: they
  write the temporary name, which is renamed when the block ends without an exception and
  removed otherwise; `temporary_name`, `commit` and `discard` are its steps, for writers that
  outlive a block (``imaging.video.VideoOutput``).
* Errors are ``WriteError("<path>: cannot write (<strerror>)")`` (an ``InputError`` and an
  ``OSError``) with the OS's words: "No space left on device", "Permission denied",
  "Read-only file system", "No such file or directory".

Files are not fsync'ed: the guarantee is against failing writes and killed processes, not
against power loss.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from typing import Iterator, Sequence

import cv2
import numpy as np

from modnet_jax.imaging.files import InputError, extension


def temporary_name(path: str) -> str:
    """A fresh temporary name beside `path`, for `commit` or `discard` later."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"
                                f"{extension(name)}")


class WriteError(InputError, OSError):
    """A result file that cannot be written: ``"<path>: cannot write (<the OS's reason>)"``.
    An ``InputError`` for the commands' error lines, and an ``OSError`` (same ``errno``,
    ``strerror``, ``filename`` = the real path) for code that handles those."""

    def __str__(self) -> str:  # the one-line message, not OSError's "[Errno n] ..." form
        return str(self.args[0])


def write_error(path: str, err: OSError, doing: str = "cannot write") -> WriteError:
    """The WriteError for the OS's `err` while writing `path` (for writers of other
    libraries' files, e.g. TensorBoard's, whose failures surface as bare OSErrors)."""
    reason = err.strerror or errno.errorcode.get(err.errno or 0, "") or str(err)
    error = WriteError(f"{path}: {doing} ({reason})")
    error.errno, error.strerror, error.filename = err.errno, reason, path
    return error


def discard(temporary: str) -> None:
    """Remove a temporary file (when it exists)."""
    with contextlib.suppress(OSError):
        os.remove(temporary)


def commit(temporary: str, path: str) -> None:
    """Rename a finished temporary file to `path`; InputError (and no temporary file left) if
    that fails."""
    try:
        os.replace(temporary, path)
    except OSError as err:
        discard(temporary)
        raise write_error(path, err) from None


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` all at once or not at all (see the module). Raises InputError."""
    temporary = temporary_name(path)
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view):]
        finally:
            os.close(handle)
    except OSError as err:
        discard(temporary)
        raise write_error(path, err) from None
    except BaseException:  # KeyboardInterrupt while writing: no half file either
        discard(temporary)
        raise
    commit(temporary, path)


def atomic_copy(source: str, path: str) -> None:
    """Copy the file `source` to `path` whole or not at all. Raises WriteError (also when
    `source` cannot be read)."""
    with atomic_path(path) as temporary:
        try:
            shutil.copyfile(source, temporary)
        except OSError as err:
            raise write_error(path, err) from None


def make_folders(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``; WriteError (the OS's reason) when it fails."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise write_error(path, err, "cannot create folder") from None


def write_text(path: str, text: str) -> None:
    """`atomic_write` of `text` as UTF-8. Raises InputError."""
    atomic_write(path, text.encode("utf-8"))


def append_whole(path: str, data: bytes) -> None:
    """Append `data` to the file `path` (created if missing) in one piece: when the write
    fails (a full disk), the file is cut back to its length before, so a log never ends in a
    partial record. Raises WriteError."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        before = os.fstat(handle).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view):]
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(handle, before)
            if isinstance(exc, OSError):
                raise write_error(path, exc) from None
            raise
    finally:
        os.close(handle)


def encode_image(path: str, image: np.ndarray, params: Sequence[int] = ()) -> bytes:
    """`image` (OpenCV's BGR/BGRA/grey order) encoded as `path`'s extension says (`params`:
    OpenCV's ``IMWRITE_*`` pairs). Raises InputError when OpenCV cannot encode it that way."""
    try:
        ok, encoded = cv2.imencode(extension(path) or ".png", image, list(params))
    except cv2.error as exc:
        raise InputError(f"{path}: cannot encode ({str(exc).strip().splitlines()[-1]})"
                         ) from None
    if not ok:
        raise InputError(f"{path}: cannot encode an image as {extension(path)!r}")
    return encoded.tobytes()


def write_image(path: str, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """Encode `image` (BGR order, as OpenCV) and `atomic_write` it. Raises InputError."""
    atomic_write(path, encode_image(path, image, params))


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary name to write `path` through (see the module): renamed to `path` when the
    block ends normally, removed when it raises. A rename failure raises InputError."""
    temporary = temporary_name(path)
    try:
        yield temporary
    except BaseException:
        discard(temporary)
        raise
    commit(temporary, path)
