"""The connection pool shared by the PostgreSQL persistence, queue and lock (internal).

One :class:`Database` (one ``psycopg_pool.AsyncConnectionPool``) per target (URL and options)
and event loop is shared by every provider of the process that opens it, reference counted:
:func:`acquire_database` opens it (and brings the schema up to date) on first use,
:func:`release_database` closes it when the last provider leaves.

:meth:`Database.run` runs one unit of work in a transaction, retrying transient errors (the
connection lost, the server restarting, a serialization failure, too many connections) with
jittered exponential back-off for up to ``retry_timeout`` seconds; every driver error that
escapes is wrapped in :mod:`wfe_core.errors`.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.lowlevel
import psycopg
import psycopg.errors
import psycopg_pool
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from wfe_core.errors import ProviderError, ProviderUnavailableError, WfeError
from wfe_core.spi import SharedResources

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from psycopg import sql

    from wfe_postgres.options import DatabaseTarget

__all__ = [
    "Database",
    "acquire_database",
    "is_transient",
    "release_database",
    "wrap_error",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

Connection = psycopg.AsyncConnection[Any]

# SQLSTATEs worth another try: the same statement can succeed a moment later.
_TRANSIENT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, shutting down)
        "08000",  # connection_exception
        "08003",  # connection_does_not_exist
        "08006",  # connection_failure
        "08001",  # sqlclient_unable_to_establish_sqlconnection
        "08004",  # sqlserver_rejected_establishment_of_sqlconnection
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a driver error that a retry a moment later may not meet."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        # No connection within connect_timeout: the server is down or every one is busy.
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate is not None:
        return exc.sqlstate in _TRANSIENT_STATES
    # No SQLSTATE: the connection broke (server gone, socket closed) or could not be made.
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def wrap_error(exc: BaseException, what: str, where: str) -> BaseException:
    """The exception to raise for ``exc``: WFE errors as they are, driver errors as
    :class:`~wfe_core.errors.ProviderUnavailableError` (transient ones: the retries ran out)
    or :class:`~wfe_core.errors.ProviderError`, chained to it."""
    if isinstance(exc, WfeError):
        return exc
    if isinstance(exc, psycopg.Error | psycopg_pool.PoolTimeout):
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error: ProviderError
        if is_transient(exc):
            error = ProviderUnavailableError(f"PostgreSQL {what} failed on {where}: {message}")
        else:
            error = ProviderError(f"PostgreSQL {what} failed on {where}: {message}")
        error.__cause__ = exc
        return error
    return exc


def rendered(statements: Mapping[str, sql.Composable]) -> dict[str, bytes]:
    """Statements composed with :mod:`psycopg.sql`, rendered once: psycopg renders a composed
    statement again at every execute (a few percent of a host's CPU for the lock's and the
    queue's statements). Identifiers and literals are quoted as they are on any connection."""
    return {name: statement.as_bytes(None) for name, statement in statements.items()}


def _log_retry(state: Any) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    logger.warning(
        "PostgreSQL: transient error, retrying (attempt %d): %s",
        state.attempt_number,
        exc,
    )


def _log_first_retry(what: str, exc: BaseException) -> None:
    logger.warning("PostgreSQL %s: transient error, retrying: %s", what, exc)


class _RecentUse:
    """The pool's ``check``: a connection returned to the pool within the last
    ``fresh_seconds`` is handed out as it is; an older one is checked with a round trip
    (``AsyncConnectionPool.check_connection``) and replaced when broken (a server restart
    while it was idle). Checking every checkout costs a round trip per operation; a
    connection that broke within the last moment fails its operation, which is then
    retried like any transient error."""

    def __init__(self, fresh_seconds: float = 1.0) -> None:
        self.fresh_seconds = fresh_seconds
        self._returned: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()

    async def check(self, conn: Connection) -> None:
        returned = self._returned.get(conn)
        if returned is not None and time.monotonic() - returned < self.fresh_seconds:
            return
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)

    async def reset(self, conn: Connection) -> None:
        self._returned[conn] = time.monotonic()


class Database:
    """A connection pool to one database with the providers' settings.

    Connections run in autocommit mode; :meth:`run` wraps its work in a transaction. Every
    connection has the schema as its ``search_path`` and the statement timeout of the options.
    """

    def __init__(self, target: DatabaseTarget) -> None:
        self.target = target
        self._pool: psycopg_pool.AsyncConnectionPool[Connection] | None = None
        self._opened = False
        self._open_lock = anyio.Lock()
        self._recent = _RecentUse()

    @property
    def refs(self) -> int:
        """How many providers of this process hold it (see :func:`acquire_database`)."""
        return _databases.references(self)

    @property
    def where(self) -> str:
        """The URL with its password hidden (for messages)."""
        return self.target.display

    @property
    def schema(self) -> str:
        return self.target.options.schema

    def connect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``psycopg.AsyncConnection.connect`` for a connection with
        the providers' settings (the password file read now). For connections kept outside
        the pool, such as a ``LISTEN`` one."""
        options = self.target.options
        # UTC: timestamps read back as aware UTC datetimes, whatever the server's zone.
        settings = [f"-c search_path={options.schema}", "-c TimeZone=UTC"]
        statement_ms = round(options.statement_timeout * 1000)
        settings.append(f"-c statement_timeout={statement_ms}")
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": options.application_name,
            "connect_timeout": max(1, round(options.connect_timeout)),
            "options": " ".join(settings),
        }
        password = self.target.password()
        if password is not None:
            kwargs["password"] = password
        return kwargs

    async def connect(self) -> Connection:
        """A new connection of its own (not from the pool), with the providers' settings;
        the caller closes it. Driver errors are wrapped."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.target.conninfo, **self.connect_kwargs()
            )
        except psycopg.Error as exc:
            raise wrap_error(exc, "connect", self.where) from exc

    async def _why_no_connection(self) -> str | None:
        """What the server or the network says to one more attempt (the pool only logs why
        its attempts failed: a wrong password or a missing database would otherwise be
        reported as a time-out), or ``None`` when it connects now."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.target.conninfo, **self.connect_kwargs()
            )
        except psycopg.Error as exc:
            lines = str(exc).strip().splitlines()
            return lines[0].removeprefix("connection failed: ") if lines else type(exc).__name__
        await conn.close()
        return None

    async def _kwargs(self) -> dict[str, Any]:
        return self.connect_kwargs()

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self, *, schema: bool = True) -> None:
        """Open the pool (waiting for its first connections) and bring the schema up to
        date, or check it when ``migrate`` is off (``schema=False``: neither). Once; later
        calls return at once."""
        async with self._open_lock:
            if self._opened:
                return
            options = self.target.options
            pool: psycopg_pool.AsyncConnectionPool[Connection] = psycopg_pool.AsyncConnectionPool(
                self.target.conninfo,
                kwargs=self._kwargs,
                min_size=options.min_pool_size,
                max_size=options.max_pool_size,
                open=False,
                # A connection that broke while idle (a server restart) is replaced before
                # it is handed out, not failed on first use.
                check=self._recent.check,
                reset=self._recent.reset,
                timeout=options.connect_timeout,
                name=f"wfe-{options.schema}",
            )
            try:
                await pool.open(wait=True, timeout=options.connect_timeout)
            except BaseException as exc:
                await pool.close()
                if isinstance(exc, psycopg.Error | psycopg_pool.PoolTimeout):
                    reason = await self._why_no_connection() or str(exc)
                    raise ProviderUnavailableError(
                        f"PostgreSQL: cannot connect to {self.where} within"
                        f" {options.connect_timeout:g} s: {reason}"
                    ) from exc
                raise
            self._pool = pool
            if not schema:
                self._opened = True
                return
            try:
                from wfe_postgres.migrations import check_schema, migrate

                if options.migrate:
                    await migrate(self)
                else:
                    await check_schema(self)
            except BaseException:
                self._pool = None
                await pool.close()
                raise
            self._opened = True

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._opened = False
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await pool.close()

    # -- work ------------------------------------------------------------------------------
    async def run(
        self,
        fn: Callable[[Connection], Awaitable[T]],
        what: str,
        *,
        transaction: bool = True,
    ) -> T:
        """``await fn(connection)`` in one transaction (``transaction=False``: in autocommit,
        for a single statement), retried on transient errors; returns its result.

        A :class:`~wfe_core.errors.WfeError` that ``fn`` raises rolls the transaction back and
        reaches the caller as it is. A retry after a connection lost during the commit may
        find the first attempt's work done: ``fn`` must be safe to run again (the revision
        and id checks of the persistence make a repeated write fail, never apply twice).
        """
        pool = self._pool
        if pool is None:
            raise ProviderError(f"PostgreSQL provider for {self.where} is not open")

        async def attempt() -> T:
            async with pool.connection() as conn:
                if not transaction:
                    return await fn(conn)
                async with conn.transaction():
                    return await fn(conn)

        try:
            # The first attempt outside tenacity: its set-up costs more than a query here,
            # and almost every call succeeds at once.
            return await attempt()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            if not is_transient(exc) or self.target.options.retry_timeout <= 0:
                raise wrap_error(exc, what, self.where) from exc
            _log_first_retry(what, exc)
        timeout = self.target.options.retry_timeout
        retrying = AsyncRetrying(
            stop=stop_after_delay(timeout),
            wait=wait_random_exponential(multiplier=0.02, max=1.0),
            retry=retry_if_exception(is_transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for retry in retrying:
                with retry:
                    return await attempt()
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise wrap_error(exc, what, self.where) from exc
        raise AssertionError("unreachable: the retry loop returns or raises")  # pragma: no cover


# -- the open databases, shared per target and event loop ------------------------------------
_databases: SharedResources[DatabaseTarget, Database] = SharedResources(
    Database, Database.open, Database.close
)


async def acquire_database(target: DatabaseTarget, *, shared: bool = True) -> Database:
    """The open :class:`Database` of ``target`` shared in this event loop, opening it on first
    use. ``shared=False`` gives one of its own (its own pool), which behaves towards the
    others like one in another process."""
    return await _databases.acquire(target, shared=shared)


async def release_database(database: Database) -> None:
    """Drop one reference to ``database``; the last one closes it."""
    await _databases.release(database)
