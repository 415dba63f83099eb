"""Running the app under uvicorn: the listening socket, and a graceful stop on SIGTERM/SIGINT.

The socket is bound here, before uvicorn starts, so a busy port or a bad host is one
TfcliError line. On the first SIGTERM or SIGINT uvicorn stops accepting connections, waits
(up to `graceful_seconds`) for the requests in flight to be answered, then the app's shutdown
drains the batcher; the process then exits 0 (uvicorn would re-raise the signal, which ends
the process with 128 + signal instead). A second SIGINT forces the exit.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from tfcli.errors import TfcliError

HANDLED = (signal.SIGINT, signal.SIGTERM)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise TfcliError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise TfcliError(
            f"cannot listen on {host}:{port}: {e.strerror}; pick another --port or stop the "
            "process that holds it"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(app: Any, sock: socket.socket, *, graceful_seconds: float = 30.0) -> None:
    """Serve `app` on `sock` until SIGTERM/SIGINT, then stop gracefully and return."""
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=graceful_seconds,
    )  # fmt: skip
    _GracefulServer(config).run(sockets=[sock])


class _GracefulServer(uvicorn.Server):
    """uvicorn's Server without re-raising the stop signal after the graceful shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
