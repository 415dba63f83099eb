"""Encode jobs (blocks of lines of every side) run in order, in worker processes or inline.

Used by `tfcli.data.encoding`; each worker holds one `LineEncoder` per tokenizer.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from tfcli.data.line_encoder import LineEncoder
from tfcli.errors import DataError
from tfcli.textio import iter_lines, open_binary

_POOL_MIN_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves

_WORKER_ENCODERS: dict[str, LineEncoder] = {}


def _worker_init(tok_paths: list[str]) -> None:
    # Ctrl-C is the parent's to handle (it terminates the pool and removes the temp dir).
    # TOKENIZERS_PARALLELISM=false (set by _start_pool): the workers are the parallelism.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for p in tok_paths:
        _WORKER_ENCODERS[p] = LineEncoder(Path(p))


# A job: for each side, (tokenizer path, file, raw bytes of up to chunk_lines lines, line count).
Job = list[tuple[str, str, bytes, int]]


def _blocks(path: Path, chunk_lines: int) -> Iterator[tuple[bytes, int]]:
    """Raw bytes of `chunk_lines` lines at a time. Lines are split in C and decoded per block
    by the workers: decoding line by line in Python cost ~8% of the encoding time."""
    with open_binary(path) as f:
        while lines := list(islice(f, chunk_lines)):
            yield b"".join(lines), len(lines)


def iter_jobs(
    files: dict[str, list[Path]], toks: dict[str, Path], chunk_lines: int
) -> Iterator[Job]:
    """The i-th files of all sides are read in lockstep (their line counts were checked)."""
    sides = list(files)
    for group in zip(*(files[s] for s in sides), strict=True):
        readers = [_blocks(p, chunk_lines) for p in group]
        for blocks in zip(*readers, strict=False):  # a file changed meanwhile: seen != total
            yield [
                (str(toks[s]), str(p), raw, n)
                for s, p, (raw, n) in zip(sides, group, blocks, strict=True)
            ]


def _decode(path: str, raw: bytes) -> str:
    """A block's lines joined by '\n', as textio.iter_lines would yield them (strict UTF-8,
    trailing '\r' and '\n' removed); its DataError, with file and line, on invalid UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        for _ in iter_lines(Path(path)):  # the error path: let textio name the line
            pass
        raise DataError(
            f"{path}: invalid UTF-8 (the file changed while encoding); run again"
        ) from None
    if text.endswith("\n"):
        text = text[:-1]
    if "\r" in text:
        text = "\n".join(line.rstrip("\r") for line in text.split("\n"))
    return text


def _run_job(encoders: dict[str, LineEncoder], job: Job) -> list:
    return [encoders[tok].encode_block(_decode(path, raw), n) for tok, path, raw, n in job]


def _worker_job(job: Job) -> list:
    return _run_job(_WORKER_ENCODERS, job)


class Runner:
    """Runs encode jobs in order, in worker processes (spawned: safe after torch or rayon
    threads exist) or in this process; at most 2 jobs per worker in flight, so memory does
    not grow with the input."""

    def __init__(self, tok_paths: list[str], workers: int) -> None:
        self.workers = workers
        self.pool = None
        self.encoders: dict[str, LineEncoder] = {}
        if workers > 1:
            self.pool = _start_pool(workers, tok_paths)
        else:
            self.encoders = {p: LineEncoder(Path(p)) for p in tok_paths}

    def map(self, jobs: Iterator[Job]) -> Iterator[list]:
        if self.pool is None:
            for job in jobs:
                yield _run_job(self.encoders, job)
            return
        pending: deque = deque()
        for job in jobs:
            pending.append(self.pool.apply_async(_worker_job, (job,)))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


def _start_pool(workers: int, tok_paths: list[str]) -> Any:
    """A process pool. On Linux the workers are forked: they start in milliseconds and, unlike
    spawned ones, do not re-import the caller's __main__ (a script without a main guard would
    recurse). They only tokenize, so threads of the parent (torch, rich) are never used there;
    the variable tells tokenizers so, which keeps it from warning about the fork."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        ctx = multiprocessing.get_context(method)
        return ctx.Pool(workers, initializer=_worker_init, initargs=(tok_paths,))
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def auto_workers(files: dict[str, list[Path]]) -> int:
    size = sum(Path(p).stat().st_size for paths in files.values() for p in paths)
    if size < _POOL_MIN_BYTES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))
