"""One owner per run directory at a time.

A process that trains a run holds an exclusive `flock` on the run directory for as long as it
runs; a process that only reads the run's checkpoints (`tfcli average`) takes a shared one. The
kernel drops a lock when its process dies, however it dies (kill -9 included), so a lock is never
left stale; RUN_DIR/.lock says who holds it (removed on a clean exit), so a refused process can
name the one in its way, and the next owner can say it took over from a run that did not finish.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tfcli import console
from tfcli.errors import TfcliError
from tfcli.run_dir import RunDir
from tfcli.textio import atomic_write_text, ensure_dir

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected there
    fcntl = None  # type: ignore[assignment]


class RunInUse(TfcliError):
    """Another process owns the run directory."""


def _holder(run: RunDir) -> dict:
    try:
        info = json.loads(run.lock.read_text(encoding="utf-8")[:4096] or "{}")
    except (OSError, ValueError):
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

    The lock is on the directory itself, so a refused or reading process writes nothing; the
    owner records who it is in RUN_DIR/.lock and removes that file when it is done. Raises
    RunInUse (one line naming the other process) when the lock is taken."""
    if fcntl is None:
        yield
        return
    created = not run.root.exists()
    ensure_dir(run.root, "run directory")
    fd = os.open(run.root, os.O_RDONLY)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUse(
                f"{run.root} is in use by {_describe(_holder(run))}; wait for it to finish, stop "
                "it, or choose another --run-dir"
            ) from None
        try:
            if exclusive:
                _take_over(run, command)
            yield
        finally:
            if exclusive:
                run.lock.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
        if created and not any(run.root.iterdir()):
            run.root.rmdir()  # refused before it wrote anything: leave no trace


def _take_over(run: RunDir, command: str) -> None:
    stale = _holder(run)
    if stale:
        console.warn(f"{run.root}: {_describe(stale)} ended without finishing; taking over")
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "argv": sys.argv[1:8],
        "started": time.time(),
    }
    atomic_write_text(run.lock, json.dumps(info), "run lock")
