"""The batching queue: requests from concurrent clients decoded together on one worker thread.

`submit` puts a job on a bounded queue (full -> `QueueFull`, which the app answers with 503)
and returns a `concurrent.futures.Future`. The worker takes the oldest job and every job
already queued behind it; when the previous batch held more than one job (clients are sending
concurrently) it also keeps collecting for up to `max_wait_ms`, so that a lone client never
waits for company. It stops at `max_requests` jobs or `max_tokens` source tokens, hands the
list to `process` (one call = one decode batch), and resolves every job's future with its own
result, in submission order. `close` stops
taking jobs, finishes those already queued, and joins the worker.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds `max_queue` jobs; the client should retry later."""


class Closed(Exception):
    """The batcher is shutting down and takes no new jobs."""


@dataclass
class Job:
    """One request: its payload, its cost in source tokens, and the future its answer goes to."""

    payload: Any
    tokens: int
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    batches: int = 0  # calls of `process`
    jobs: int = 0  # jobs answered (results and errors)
    largest: int = 0  # most jobs in one batch
    busy_seconds: float = 0.0  # time spent in `process`


_STOP = object()


class Batcher:
    """A bounded queue of jobs and the worker thread that processes them in batches."""

    def __init__(
        self,
        process: Callable[[Sequence[Any]], Sequence[Any]],
        *,
        max_wait_ms: float = 5.0,
        max_requests: int = 64,
        max_tokens: int = 8192,
        max_queue: int = 256,
    ) -> None:
        if max_requests < 1 or max_tokens < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_requests, max_tokens and max_queue must be >= 1, wait >= 0")
        self.process = process
        self.max_wait = max_wait_ms / 1000.0
        self.max_requests, self.max_tokens = max_requests, max_tokens
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.stats = BatcherStats()
        self._lock = threading.Lock()  # submit vs close: no job slips in after the stop mark
        self._closed = False
        self.submitted = 0
        self._held: Job | None = None  # a job that did not fit the last batch: first of the next
        self._concurrent = False  # the last batch held several jobs: worth waiting for more
        self._worker = threading.Thread(target=self._run, name="tfcli-batcher", daemon=True)
        self._worker.start()

    def submit(self, payload: Any, tokens: int) -> Future:
        """Queue one job; its future gets `process`'s result for it (or its exception)."""
        job = Job(payload, max(int(tokens), 1))
        with self._lock:
            if self._closed:
                raise Closed("the server is shutting down")
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(f"{self.queue.maxsize} requests are waiting") from None
            self.submitted += 1
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Take no new jobs, finish the queued ones, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.queue.put(_STOP)  # blocks while full: the worker is draining it
        self._worker.join(timeout)

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue (not yet taken into a batch)."""
        return self.queue.qsize()

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet answered (queued, being collected or decoded)."""
        return self.submitted - self.stats.jobs

    def _run(self) -> None:
        while True:
            batch, stop = self._collect()
            if batch:
                self._answer(batch)
            if stop:
                return

    def _collect(self) -> tuple[list[Job], bool]:
        """The next batch (oldest first) and whether the stop mark was reached."""
        first = self._held if self._held is not None else self.queue.get()
        self._held = None
        if first is _STOP:
            return [], True
        batch, tokens = [first], first.tokens
        deadline = time.monotonic() + (self.max_wait if self._concurrent else 0.0)
        while len(batch) < self.max_requests:
            left = deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            if tokens + job.tokens > self.max_tokens:
                self._held = job
                break
            batch.append(job)
            tokens += job.tokens
        self._concurrent = len(batch) > 1
        return batch, False

    def _answer(self, batch: list[Job]) -> None:
        began = time.perf_counter()
        try:
            results = list(self.process([job.payload for job in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"process gave {len(results)} results for {len(batch)} jobs")
        except BaseException as e:  # noqa: BLE001 - every waiting client gets the error
            results = [e] * len(batch)
        s = self.stats  # counted before the clients hear back, so /health never lags them
        s.batches += 1
        s.jobs += len(batch)
        s.largest = max(s.largest, len(batch))
        s.busy_seconds += time.perf_counter() - began
        for job, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
