"""Threads around the engine: a reader that decodes ahead and a writer that encodes behind.

    with prefetch(decode_all(), depth=8) as frames, BackgroundWriter(encode, depth=8) as out:
        for result in engine.video(frames):
            out.put(result)

Both queues are bounded (``depth`` items), so memory stays bounded whatever the speeds: a
slow consumer blocks the reader, a slow writer blocks the loop. An exception in either thread
is raised in the caller's thread (at the next item, ``put`` or on leaving the ``with``).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class prefetch:  # noqa: N801 - used like a function
    """Iterate ``iterable`` on a background thread, at most ``depth`` items ahead."""

    def __init__(self, iterable: Iterable[Any], depth: int = 4):
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(iterable),), daemon=True,
                                        name="modnet-reader")
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it: Iterator[Any]) -> None:
        try:
            for item in it:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(exc))
            return
        self._put(_END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop the reader (it finishes the item it is decoding) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> "prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BackgroundWriter:
    """Call ``fn(item)`` for every ``put(item)`` on a background thread, in order."""

    def __init__(self, fn: Callable[[Any], None], depth: int = 4):
        self._fn = fn
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, int(depth)))
        self._error: "BaseException | None" = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="modnet-writer")
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        """Wait until every item is written; raise the writer's exception if it had one."""
        if self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: finish quietly, keep the first exception
            try:
                self.close()
            except BaseException:  # noqa: BLE001
                pass
