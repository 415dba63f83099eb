"""One owner per run directory: a second trainer, a resume of a live run, or an average while a
run trains are refused with one line naming the owner; a killed owner's lock is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tfcli.run_dir import RunDir
from tfcli.run_lock import RunInUse, hold

HOLDER = """
import sys, time
from tfcli.run_dir import RunDir
from tfcli.run_lock import hold
with hold(RunDir(sys.argv[1]), "train"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def owner(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run.root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield run, proc
    proc.kill()
    proc.wait()


def test_a_second_owner_is_refused_naming_the_first(owner):
    run, proc = owner
    with pytest.raises(RunInUse, match=rf"is in use by process {proc.pid} on .*\(train, since"):
        with hold(run, "train"):
            pass
    with pytest.raises(RunInUse, match="in use"), hold(run, "average", exclusive=False):
        pass


def test_cli_commands_refuse_a_live_run_with_one_line(owner, tmp_path):
    from tfcli.demo import write_demo

    run, proc = owner
    run.checkpoints.mkdir()  # a live run, as it looks before its first checkpoint
    write_demo(tmp_path / "demo", n_train=20, n_valid=5, n_test=5, n_mono=5, n_mono_valid=5)
    env = {**os.environ, "TFCLI_QUIET": "0"}
    for args in (
        ["train", "demo-tiny", "--run-dir", str(run.root), "--max-steps", "1"],
        ["train", "demo-tiny", "--run-dir", str(run.root), "--resume"],
        ["average", str(run.root), "--last", "2", "-o", str(tmp_path / "avg.safetensors")],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "tfcli", *args], capture_output=True, text=True, env=env
        )
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert lines[-1].startswith("Error: ") and f"process {proc.pid}" in lines[-1], lines


def test_a_killed_owner_leaves_no_stale_lock(owner, capsys):
    run, proc = owner
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with hold(run, "train"):
        pass
    assert "ended without finishing; taking over" in capsys.readouterr().err
    with hold(run, "train"):  # released cleanly last time: nothing to take over
        pass
    assert "taking over" not in capsys.readouterr().err


def test_readers_share_and_a_released_lock_is_free(tmp_path):
    run = RunDir(tmp_path / "run")
    with hold(run, "average", exclusive=False), hold(run, "average", exclusive=False):
        pass
    start = time.perf_counter()
    with hold(run, "train"):
        pass
    assert time.perf_counter() - start < 1.0
