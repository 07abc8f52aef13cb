"""One worker thread that mattes the photos of every request, batching concurrent ones.

    request threads --submit--> bounded queue --> worker: take what is waiting (up to
    ``max_batch``; ``window`` s more for stragglers, default none) --> one engine call per
    reference size --> each request's Future

While the worker is busy, new requests wait in the queue; it then takes them all at once, so
under load batches form by themselves, and a lone request adds no wait.

Requests that arrive together run in one ``MattingEngine.images`` call, which batches photos
of equal size (so a GPU sees batches, not single frames). The worker asks for mattes only:
cut-outs and composites are made from them by the caller, on the host, so requests for
different outputs still share batches and compiled programs. ``max_batch=1`` runs one request at a
time (the load benchmark's baseline). When ``max_queue`` requests already wait, ``submit``
raises ``Busy`` at once (the API answers 503 with ``Retry-After``) instead of letting memory
grow with the backlog.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from modnet_jax.serve.engine_adapter import EngineAdapter


class Busy(Exception):
    """The queue is full; ``retry_after``: seconds after which a retry is likely to be taken."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy ({retry_after} s until it is likely to have room)")
        self.retry_after = retry_after


@dataclass
class Job:
    image: np.ndarray
    ref_size: Optional[int] = None
    future: Future = field(default_factory=Future)


class BatchWorker:
    """The worker thread (started at construction; ``close`` ends it)."""

    def __init__(self, adapter: EngineAdapter, max_queue: int = 32,
                 max_batch: Optional[int] = None, window: float = 0.0):
        self.adapter = adapter
        self.max_batch = int(max_batch or 4 * adapter.batch_size)
        self.max_queue = int(max_queue)
        self.window = float(window)
        self._queue: "queue.Queue[Optional[Job]]" = queue.Queue(maxsize=int(max_queue))
        self._seconds_per_photo = 0.5  # running estimate, for Retry-After
        self.served = 0
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="matting-worker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def retry_after(self) -> int:
        return max(1, int(np.ceil(self._queue.maxsize * self._seconds_per_photo)))

    def full(self) -> bool:
        return self._queue.full()

    def submit(self, job: Job) -> Future:
        """Queue ``job``; its Future gives a ``Matted`` or raises the job's ``InputError``.
        Raises ``Busy`` when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy(self.retry_after()) from None
        return job.future

    def submit_job(self, image: np.ndarray, **options) -> Future:
        """``submit(Job(image, **options))``."""
        return self.submit(Job(image, **options))

    def matte(self, image: np.ndarray, **options) -> Any:
        """Blocking: the ``Matted`` for one image (raises as ``submit`` and the job do)."""
        return self.submit_job(image, **options).result()

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:
            pass
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the thread

    def _take(self) -> Optional[List[Job]]:
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        deadline = time.monotonic() + self.window
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # end after this batch
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            groups: Dict[Optional[int], List[Job]] = {}
            for job in jobs:
                groups.setdefault(job.ref_size, []).append(job)
            for ref_size, group in groups.items():
                self._matte_group(ref_size, group)

    def _matte_group(self, ref_size: Optional[int], group: List[Job]) -> None:
        started = time.monotonic()
        try:
            results = self.adapter.photos([(i, job.image) for i, job in enumerate(group)],
                                          ref_size=ref_size)
        except Exception as exc:  # noqa: BLE001 -- handed to every waiting request
            for job in group:
                job.future.set_exception(exc)
            return
        for i, job in enumerate(group):
            result = results.get(i)
            if isinstance(result, Exception):
                job.future.set_exception(result)
            elif result is None:
                job.future.set_exception(RuntimeError("the engine returned no result"))
            else:
                job.future.set_result(result)
        per_photo = (time.monotonic() - started) / len(group)
        self._seconds_per_photo = 0.8 * self._seconds_per_photo + 0.2 * per_photo
        self.served += len(group)
        self.batches += 1
