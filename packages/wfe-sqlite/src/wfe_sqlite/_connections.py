"""The connections of one database: the writer, the pool of readers and the watch
connection, with their PRAGMAs; opening (WAL, migrations) and closing them."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import create_engine, event
from sqlalchemy.pool import QueuePool, StaticPool

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_sqlite._errors import wrap_error
from wfe_sqlite.schema import migrate

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from wfe_sqlite.options import DatabaseTarget

# Named after the public module, so logging set up for "wfe_sqlite.engine" keeps seeing it.
logger = logging.getLogger("wfe_sqlite.engine")


def driver(conn: Connection) -> sqlite3.Connection:
    """The ``sqlite3`` connection under ``conn``, for the statements run on every step.

    Run on it, a statement skips SQLAlchemy's compile-cache lookup, parameter processing and
    result wrapping, which cost several times what SQLite spends on a lookup by key. Only
    inside a transaction the store began (every ``fn`` of :meth:`Store.write` and
    :meth:`Store.read` runs in one): the driver's connection does not begin one by itself.
    """
    return cast("sqlite3.Connection", conn.connection.driver_connection)


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> Any:
    """``PRAGMA journal_mode = WAL``, retried until ``busy_timeout`` runs out.

    Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, when another process is switching the same
    file at that moment; so several processes opening a new file together retry here.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


# The transactions begin on the driver's connection: through SQLAlchemy the BEGIN cost more
# than a lookup by key (every group, read or write, runs one).
def _begin_immediate(conn: Connection) -> None:
    # Take the write lock when the transaction starts, not at its first write: a deferred
    # transaction that read first could not upgrade without a SQLITE_BUSY_SNAPSHOT error.
    raw = driver(conn)
    # Already begun on the driver's connection by the group commit (see _writes._begin): a
    # statement run through SQLAlchemy inside it joins it.
    if not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def _begin_deferred(conn: Connection) -> None:
    driver(conn).execute("BEGIN")


class Connections:
    """The connections of one database (blocking calls: run them in worker threads).

    In-memory databases have the writer only (SQLite gives each connection its own in-memory
    database), so their reads go through it too.
    """

    def __init__(self, target: DatabaseTarget) -> None:
        self.target = target
        #: The writer (``None`` until opened and after closing).
        self.writer: Connection | None = None
        #: The pool of reader connections of a file (``None``: in memory, or not open).
        self.read_engine: Engine | None = None
        #: Tells whether anything was committed since the last look (see
        #: :meth:`wfe_sqlite._channels.ChangeChannels.data_version`).
        self.watch: sqlite3.Connection | None = None
        #: Held while a transaction runs on the writer, so closing waits for it.
        self.writer_lock = threading.Lock()
        self._write_engine: Engine | None = None
        self._open_lock = threading.Lock()
        self._opened = False
        self._closed = False

    @property
    def where(self) -> str:
        """The database as messages name it."""
        return "in-memory database" if self.target.is_memory else f"database {self.target.path}"

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        opts = self.target.options
        path = self.target.path
        conn = sqlite3.connect(
            path,
            timeout=opts.busy_timeout,
            # Transactions are begun explicitly (see the "begin" listeners): the sqlite3
            # module's implicit transactions do not mix with savepoints.
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(opts.busy_timeout * 1000)}")
            if not self.target.is_memory:
                if writer:
                    mode = _switch_to_wal(conn, opts.busy_timeout)
                    if mode is None or str(mode[0]).lower() != "wal":
                        raise ProviderError(
                            f"{self.where}: could not switch to WAL mode (got {mode!r}); "
                            "is it on a network file system?"
                        )
                else:
                    conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA synchronous = {opts.synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def open_blocking(self) -> None:
        """Connect and migrate (once; later calls return at once)."""
        with self._open_lock:
            if self._opened:
                return
            if self._closed:
                raise ProviderError(f"{self.where} is closed")
            try:
                self._open_engines()
            except BaseException as exc:
                self._dispose()
                error = wrap_error(exc, f"opening {self.where}")
                if error is exc:
                    raise
                raise error from exc
            self._opened = True

    def _open_engines(self) -> None:
        if not self.target.is_memory:
            parent = Path(self.target.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"sqlite: cannot create the directory {parent} of {self.where}: {exc}"
                ) from exc
        self._write_engine = create_engine(
            "sqlite://",
            creator=lambda: self._connect(writer=True),
            poolclass=StaticPool,
        )
        event.listen(self._write_engine, "begin", _begin_immediate)
        self.writer = self._write_engine.connect()
        migrate(self.writer, where=self.where)
        if not self.target.is_memory:
            size = self.target.options.read_connections
            self.read_engine = create_engine(
                "sqlite://",
                creator=lambda: self._connect(writer=False),
                poolclass=QueuePool,
                pool_size=size,
                max_overflow=0,
                pool_reset_on_return="rollback",
            )
            event.listen(self.read_engine, "begin", _begin_deferred)
            self.watch = sqlite3.connect(
                self.target.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        logger.debug("opened %s", self.where)

    def _dispose(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        for engine in (self.read_engine, self._write_engine):
            if engine is not None:
                engine.dispose()
        self.read_engine = self._write_engine = None

    def close_blocking(self) -> None:
        """Close every connection (the in-memory database is gone afterwards), once the
        transaction under way on the writer (if any) is done."""
        with self._open_lock, self.writer_lock:
            self._closed = True
            self._opened = False
            self._dispose()
        logger.debug("closed %s", self.where)
