"""The server as a real `tfcli serve` process on 127.0.0.1: a graceful SIGTERM (the request in
flight is answered, new connections refused, exit 0), and the one-line bind errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfcli.cli import cli

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def start(path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("tfcli")
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(exe), "serve", str(path), "--port", "0", "--threads", "1", *args],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, f"http://127.0.0.1:{found.group(1)}"
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"the server did not start: {seen}")


@pytest.mark.slow
def test_sigterm_answers_the_request_in_flight_then_exits_zero(checkpoints):
    proc, url = start(checkpoints["seq2seq"])
    try:
        for _ in range(100):
            try:
                assert httpx.get(f"{url}/health", timeout=5).json()["status"] == "ok"
                break
            except httpx.TransportError:
                time.sleep(0.1)
        answer: dict = {}
        long = "the big red dog sat on the small mat in the park at the moon tonight " * 3
        body = {"sentences": [long] * 64, "beam": 16, "max_len_a": 2.0}  # seconds of decoding

        def post():
            answer["r"] = httpx.post(f"{url}/translate", json=body, timeout=60)

        client = threading.Thread(target=post)
        client.start()
        for _ in range(500):  # until the request is being decoded
            in_flight = httpx.get(f"{url}/health", timeout=5).json()["in_flight"]
            if in_flight == 1:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert in_flight == 1
        client.join(60)
        assert answer["r"].status_code == 200
        assert [r["source"] for r in answer["r"].json()["results"]] == body["sentences"]
        assert proc.wait(60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
        assert "stopped: 1 requests answered in 1 batches" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_busy_port_is_one_line(checkpoints):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["serve", str(checkpoints["seq2seq"]), "--port", str(port), "--device", "cpu"]
        )
    assert result.exit_code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in str(result.exception)
