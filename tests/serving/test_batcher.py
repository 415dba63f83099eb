"""The batching queue: concurrent jobs share a batch, each future gets its own result, the
limits (requests, tokens, queue) hold, errors reach the right clients, close drains."""

from __future__ import annotations

import threading

import pytest

from tfcli.serving.batcher import Batcher, Closed, QueueFull


class Gate:
    """A `process` that blocks its first call until released, and records every batch."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list] = []

    def __call__(self, payloads):
        self.entered.set()
        self.release.wait(10)
        self.batches.append(list(payloads))
        return [p * 10 if isinstance(p, int) else p for p in payloads]


def test_jobs_queued_while_busy_are_decoded_together_in_order():
    gate = Gate()
    b = Batcher(gate, max_wait_ms=0, max_requests=64)
    first = b.submit(0, 1)
    assert gate.entered.wait(5)
    futures = [b.submit(i, 1) for i in range(1, 11)]  # all wait while the first batch runs
    assert b.in_flight == 11 and b.pending == 10
    gate.release.set()
    assert first.result(5) == 0
    assert [f.result(5) for f in futures] == [i * 10 for i in range(1, 11)]
    assert b.in_flight == 0
    assert gate.batches == [[0], list(range(1, 11))]
    assert b.stats.batches == 2 and b.stats.jobs == 11 and b.stats.largest == 10
    b.close()


@pytest.mark.parametrize(("max_requests", "max_tokens", "sizes"), [(1, 100, [1] * 6),
                         (4, 100, [4, 2]), (64, 5, [2, 2, 2])])  # fmt: skip
def test_batches_respect_the_request_and_token_limits(max_requests, max_tokens, sizes):
    gate = Gate()
    b = Batcher(gate, max_wait_ms=0, max_requests=max_requests, max_tokens=max_tokens)
    block = b.submit("block", 1)
    assert gate.entered.wait(5)
    futures = [b.submit(i, 2) for i in range(6)]
    gate.release.set()
    block.result(5)
    assert [f.result(5) for f in futures] == [i * 10 for i in range(6)]
    assert [len(x) for x in gate.batches[1:]] == sizes
    b.close()


def test_the_wait_window_gathers_concurrent_jobs_but_never_delays_a_lone_one():
    import time

    gate = Gate()
    b = Batcher(gate, max_wait_ms=400, max_requests=8)
    began = time.monotonic()
    block = b.submit("lone", 1)
    assert gate.entered.wait(5)
    gate.release.set()
    assert block.result(5) == "lone" and time.monotonic() - began < 0.4  # no wait alone
    gate.release.clear()
    gate.entered.clear()
    block = b.submit("block", 1)
    assert gate.entered.wait(5)
    pair = [b.submit(i, 1) for i in range(2)]  # queued together: a batch of two
    gate.release.set()
    assert [f.result(5) for f in pair] == [0, 10]
    futures = []
    for i in range(6):  # now concurrent: jobs 30 ms apart share one batch
        futures.append(b.submit(i, 1))
        time.sleep(0.03)
    assert [f.result(5) for f in futures] == [i * 10 for i in range(6)]
    assert [len(x) for x in gate.batches] == [1, 1, 2, 6]
    b.close()


def test_a_full_queue_refuses_and_close_drains_then_refuses():
    gate = Gate()
    b = Batcher(gate, max_wait_ms=0, max_queue=2)
    running = b.submit(1, 1)
    assert gate.entered.wait(5)
    queued = [b.submit(2, 1), b.submit(3, 1)]
    with pytest.raises(QueueFull, match="2 requests are waiting"):
        b.submit(4, 1)
    closer = threading.Thread(target=b.close)
    closer.start()
    gate.release.set()
    closer.join(5)
    assert running.result(0) == 10 and [f.result(0) for f in queued] == [20, 30]
    with pytest.raises(Closed):
        b.submit(5, 1)


def test_errors_reach_their_clients():
    def process(payloads):
        if "crash" in payloads:
            raise RuntimeError("boom")
        return [ValueError(p) if p == "bad" else p for p in payloads]

    b = Batcher(process, max_wait_ms=0)
    assert b.submit("ok", 1).result(5) == "ok"
    with pytest.raises(ValueError, match="bad"):
        b.submit("bad", 1).result(5)
    with pytest.raises(RuntimeError, match="boom"):
        b.submit("crash", 1).result(5)
    assert b.submit("still ok", 1).result(5) == "still ok"  # the worker survives
    b.close()
