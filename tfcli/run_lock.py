"""One owner per run directory at a time.

A process that trains a run holds an exclusive `flock` on RUN_DIR/.lock for as long as it
runs; a process that only reads the run's checkpoints (`tfcli average`) takes a shared one. The
kernel drops a lock when its process dies, however it dies (kill -9 included), so a lock is never
left stale; the file keeps who held it, so the next owner can say it took over from a run that
did not finish, and a refused one can name the process in its way.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from tfcli import console
from tfcli.errors import TfcliError
from tfcli.run_dir import RunDir

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected there
    fcntl = None  # type: ignore[assignment]


class RunInUse(TfcliError):
    """Another process owns the run directory."""


def _holder(f: IO[str]) -> dict:
    f.seek(0)
    try:
        info = json.loads(f.read(4096) or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    if not info:
        return "another process"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("started", 0)))
    return f"process {info.get('pid')} on {info.get('host')} ({info.get('command')}, since {since})"


@contextmanager
def hold(run: RunDir, command: str, *, exclusive: bool = True) -> Iterator[None]:
    """Own `run` while the block runs: exclusive for a trainer, shared for a reader.

    Raises RunInUse (one line naming the other process) when the lock is taken."""
    if fcntl is None:
        yield
        return
    run.root.mkdir(parents=True, exist_ok=True)
    with open(run.lock, "a+", encoding="utf-8") as f:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUse(
                f"{run.root} is in use by {_describe(_holder(f))}; wait for it to finish, stop "
                "it, or choose another --run-dir"
            ) from None
        try:
            if exclusive:
                _take_over(f, run, command)
            yield
        finally:
            if exclusive:
                f.seek(0)
                f.truncate()
                f.flush()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _take_over(f: IO[str], run: RunDir, command: str) -> None:
    stale = _holder(f)
    if stale and stale.get("pid") != os.getpid():
        console.warn(f"{run.root}: {_describe(stale)} ended without finishing; taking over")
    f.seek(0)
    f.truncate()
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "argv": sys.argv[1:8],
        "started": time.time(),
    }
    f.write(json.dumps(info))
    f.flush()
