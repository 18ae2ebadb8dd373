"""Connections, threads and transactions shared by the SQLite persistence, queue and lock.

One :class:`Store` per database file (per event loop) is shared by every provider that
opens it, so the persistence, queue and lock of a host use one writer connection between them
and an in-memory database is one database for all three.

Blocking SQLite calls never run on the event loop (``PRAGMA data_version``, which reads shared
memory and never waits, is the one call made there; see :meth:`Store.data_version`):

* **Writes** go to one connection. Callers add their operation to the last group in line
  (up to ``max_batch_size`` each); when a group's turn comes, the caller of its first
  operation (the *leader*) runs it in a worker thread as ONE transaction (``BEGIN
  IMMEDIATE``) and commits once, while the other callers wait for the group to be done:
  operations arriving while a transaction is being written share the next commit and its
  sync ("group commit"), which is what makes ``synchronous=FULL`` fast under load. An
  operation that fails does not fail the others of its group (see :meth:`Store.write`). No
  caller returns before the commit that holds its write is done, and synced unless the write
  was marked as one whose loss could only cause a redelivery.
* **Reads** run on a small pool of reader connections in worker threads; in WAL mode they do
  not wait for writers. They are grouped like writes: the reads pending together run in one
  worker thread call and one read transaction (one snapshot), since the hop to a thread and
  back costs more CPU than a read by id. The reads arriving while a group runs wait to form
  the next one, unless that group has run for a few milliseconds (a long read): then they
  start another beside it, up to ``read_connections`` groups at once. An operation that fails
  does not fail the others of its group (see :meth:`Store.read`).

In-memory databases have a single connection (SQLite gives each connection its own in-memory
database), so their reads go through the writer too.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import anyio.lowlevel
import anyio.to_thread
from sqlalchemy import create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool

from wfe_core.errors import ConfigurationError, ProviderError, WfeError
from wfe_sqlite.schema import migrate

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection, Engine

    from wfe_sqlite.options import DatabaseTarget, SqliteOptions

__all__ = ["Store", "acquire_store", "driver", "from_us", "now_us", "release_store", "to_us"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: Seconds a read group runs before reads arriving meanwhile start another group beside it
#: instead of waiting to form the next one: larger groups cost less CPU, but a long read
#: (a big list) should not hold up the short ones for long.
_SLOW_READ_GROUP = 0.005


def to_us(value: datetime) -> int:
    """``value`` as integer microseconds since the epoch (naive datetimes are taken as UTC,
    as :mod:`wfe_core.serialization` does)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    """The aware UTC datetime of ``value`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


def now_us() -> int:
    """The wall clock now, in microseconds since the epoch.

    Wall-clock time (not a monotonic clock) because leases and visibility deadlines are shared
    with other processes through the file; processes on one machine share the clock.
    """
    return time.time_ns() // 1000


def driver(conn: Connection) -> sqlite3.Connection:
    """The ``sqlite3`` connection under ``conn``, for the statements run on every step.

    Run on it, a statement skips SQLAlchemy's compile-cache lookup, parameter processing and
    result wrapping, which cost several times what SQLite spends on a lookup by key. Only
    inside a transaction the store began (every ``fn`` of :meth:`Store.write` and
    :meth:`Store.read` runs in one): the driver's connection does not begin one by itself.
    """
    return cast("sqlite3.Connection", conn.connection.driver_connection)


def wrap_error(exc: BaseException, what: str) -> BaseException:
    """The exception to raise for ``exc``: WFE errors as they are, anything from SQLite or
    SQLAlchemy as a :class:`~wfe_core.errors.ProviderError` chained to it."""
    if isinstance(exc, WfeError):
        return exc
    if isinstance(exc, (SQLAlchemyError, sqlite3.Error)):
        cause = getattr(exc, "orig", None) or exc
        message = str(cause)
        if "locked" in message or "busy" in message:
            message += " (another process held the write lock longer than busy_timeout)"
        error = ProviderError(f"SQLite {what} failed: {message}")
        error.__cause__ = exc
        return error
    return exc


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


class _Group:
    """Write operations committed together (up to ``max_batch_size``, in arrival order).

    The caller of the first one leads the group when its turn comes (runs it in the writer
    thread); the others wait for ``done``. One object and two events per group rather than an
    object and an event per operation: on the event loop a write costs an append and one
    wake-up, and it leaves fewer objects for the garbage collector to promote and scan.
    """

    __slots__ = ("done", "durable", "errors", "finished", "fns", "lead", "results")

    def __init__(self) -> None:
        self.fns: list[Callable[[Connection], Any]] = []
        #: Whether any of them must be synced (see :meth:`Store.write`'s ``durable``).
        self.durable = False
        #: Filled by the writer thread: ``results[i]`` of ``fns[i]`` unless ``errors`` has ``i``.
        self.results: list[Any] = []
        self.errors: dict[int, BaseException] = {}
        #: Run (or failed as a whole) and ``done`` set.
        self.finished = False
        self.done = anyio.Event()
        #: Set when the first operation's caller may lead the group.
        self.lead = anyio.Event()


class _Read(Generic[T]):
    """One read operation waiting for (or done by) a group."""

    __slots__ = ("done", "error", "fn", "result", "taken", "wake")

    def __init__(self, fn: Callable[[Connection], T]) -> None:
        self.fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        #: Taken into a group (which runs it even when its caller has gone).
        self.taken = False
        self.done = False
        #: Set when it is done, or when it may lead a group (a fresh one for each wait).
        self.wake: anyio.Event | None = None


class _GroupFailure(Exception):
    """An operation of a group failed in a way that may have spoiled the whole transaction."""


class Store:
    """The engines and connections of one database, shared by the providers that open it.

    Reference-counted by :func:`acquire_store` / :func:`release_store`; everything here is
    used from one event loop (plus the worker threads it starts).
    """

    def __init__(self, target: DatabaseTarget) -> None:
        self.target = target
        self.options: SqliteOptions = target.options
        self.refs = 0
        #: Where the registry keeps it (None: a store of its own).
        self.registry_key: tuple[DatabaseTarget, object] | None = None
        self._open_lock = threading.Lock()
        # Held while a group runs, so closing waits for the transaction under way.
        self._batch_lock = threading.Lock()
        self._opened = False
        self._closed = False
        self._write_engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._writer: Connection | None = None
        # The writer's current PRAGMA synchronous (see write's ``durable``).
        self._sync_level: str = self.options.synchronous
        # Tells whether anything was committed since the last look (see data_version).
        self._watch: sqlite3.Connection | None = None
        # Group commit state (touched only on the event loop thread): the groups not taken by
        # a leader yet, oldest first, and whether a group is being led. While one is, every
        # group in line has a first caller waiting for its ``lead``; while none is, the line
        # is empty.
        self._groups: deque[_Group] = deque()
        self._leading = False
        # Grouped reads (also touched only on the event loop thread): the reads not taken into
        # a group yet, and how many groups are running.
        self._read_queue: list[_Read[Any]] = []
        self._read_groups = 0
        # When the last group started (time.monotonic()).
        self._read_started = 0.0
        # Created on first use: anyio primitives need a running event loop. Own limiters, so
        # database work never waits for threads taken by other to_thread users (the default
        # limiter is shared by the whole program).
        self._read_limiter: anyio.CapacityLimiter | None = None
        self._write_limiter: anyio.CapacityLimiter | None = None
        # In-process wake-ups: channel name -> events of the tasks waiting on it.
        self._waiters: dict[str, set[anyio.Event]] = {}

    @property
    def where(self) -> str:
        return "in-memory database" if self.target.is_memory else f"database {self.target.path}"

    # -- opening and closing (blocking; called in worker threads) ---------------------------
    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        opts = self.options
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
        self._writer = self._write_engine.connect()
        migrate(self._writer, where=self.where)
        if not self.target.is_memory:
            size = self.options.read_connections
            self._read_engine = create_engine(
                "sqlite://",
                creator=lambda: self._connect(writer=False),
                poolclass=QueuePool,
                pool_size=size,
                max_overflow=0,
                pool_reset_on_return="rollback",
            )
            event.listen(self._read_engine, "begin", _begin_deferred)
            self._watch = sqlite3.connect(
                self.target.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        logger.debug("opened %s", self.where)

    def _dispose(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        for engine in (self._read_engine, self._write_engine):
            if engine is not None:
                engine.dispose()
        self._read_engine = self._write_engine = None

    def close_blocking(self) -> None:
        """Close every connection (the in-memory database is gone afterwards)."""
        with self._open_lock, self._batch_lock:
            self._closed = True
            self._opened = False
            self._dispose()
        logger.debug("closed %s", self.where)

    # -- writes -----------------------------------------------------------------------------
    async def write(
        self, fn: Callable[[Connection], T], what: str = "write", *, durable: bool = True
    ) -> T:
        """Run ``fn(connection)`` in a write transaction and return its result once committed.

        ``fn`` runs in a worker thread inside a transaction it may share with other
        operations; it must not commit. It should check before it writes: a WFE error raised
        before any write fails only this operation (and reaches the caller as it is); any
        other exception, or a WFE error after a write, makes the whole group run again one
        operation per transaction, so ``fn`` may run twice and must depend only on its inputs
        and the database.

        ``durable=False`` marks a write whose loss in a power failure (not a process crash:
        that loses nothing) could only cause a redelivery or a retry: a queue claim, an ack,
        a lease. A group of such writes alone is committed without waiting for the disk sync
        (``synchronous=NORMAL`` for that commit); it becomes durable with the next synced
        commit, since the WAL is written in order. Any durable write in the group makes the
        whole commit synced.

        Once called, the write happens even when the caller is cancelled, and the call ends
        (with the cancellation) only after the commit holding it, like a completed call.
        """
        groups = self._groups
        if groups and len(groups[-1].fns) < self.options.max_batch_size:
            group = groups[-1]
        else:
            group = _Group()
            groups.append(group)
        index = len(group.fns)
        group.fns.append(fn)
        if durable:
            group.durable = True
        try:
            if index:
                await group.done.wait()
            elif self._leading:
                await group.lead.wait()
        except BaseException:
            # Cancelled while waiting. Once queued, the write happens (as a database call in
            # a thread would), and its caller still returns only after the commit holding it;
            # the first caller of a group leads it, since the others wait for it. Shielded
            # only here and while leading: a shield costs more than the rest of a write.
            with anyio.CancelScope(shield=True):
                if index:
                    await group.done.wait()
                else:
                    await group.lead.wait()
                    await self._lead(group)
            raise
        if not index:
            # Shielded: the others of the group wait for it even when this caller is cancelled.
            with anyio.CancelScope(shield=True):
                await self._lead(group)
        error = group.errors.get(index)
        if error is not None:
            # Not "from None": wrap_error chains the driver's exception as the cause.
            raise wrap_error(error, what)
        return cast("T", group.results[index])

    async def _lead(self, group: _Group) -> None:
        """Run ``group`` (the first in line) in the writer thread, then hand the lead to the
        next group in line."""
        self._leading = True
        taken = self._groups.popleft()
        assert taken is group
        if self._write_limiter is None:
            self._write_limiter = anyio.CapacityLimiter(1)
        try:
            await anyio.to_thread.run_sync(self._run_batch, group, limiter=self._write_limiter)
        except BaseException as exc:  # pragma: no cover - thread start failures
            for index in range(len(group.fns)):
                group.errors.setdefault(index, exc)
        finally:
            group.finished = True
            group.done.set()
            if self._groups:
                self._groups[0].lead.set()
            else:
                self._leading = False

    def _run_batch(self, group: _Group) -> None:
        with self._batch_lock:
            self._run_batch_locked(group)

    def _run_batch_locked(self, group: _Group) -> None:
        fns = group.fns
        errors = group.errors
        group.results = results = [None] * len(fns)
        conn = self._writer
        if conn is None:
            error = ProviderError(f"{self.where} is closed")
            for index in range(len(fns)):
                errors[index] = error
            return
        self._set_sync(conn, group.durable)
        if len(fns) == 1:
            self._run_alone(conn, group, 0)
            return
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            with conn.begin():
                for index, fn in enumerate(fns):
                    before = raw.total_changes
                    try:
                        results[index] = fn(conn)
                    except WfeError as exc:
                        if raw.total_changes != before:
                            # It wrote, then refused: its writes must not commit with the
                            # others (savepoints would allow that, at four times the cost).
                            raise _GroupFailure from exc
                        errors[index] = exc
                    except Exception as exc:
                        # A database error may have rolled the whole transaction back
                        # (SQLite does that for some errors), so trust nothing of this group.
                        raise _GroupFailure from exc
        except _GroupFailure:
            # Run every operation of the group on its own, so only the guilty one fails.
            errors.clear()
            for index in range(len(fns)):
                results[index] = None
                self._run_alone(conn, group, index)
        except Exception as exc:
            # BEGIN or COMMIT failed (the write lock stayed taken past busy_timeout, an I/O
            # error): the group failed as a whole. Not retried one by one: each would wait
            # out busy_timeout again.
            for index in range(len(fns)):
                results[index] = None
                errors[index] = exc

    def _set_sync(self, conn: Connection, durable: bool) -> None:
        """Sync this commit (the configured level) or not (``NORMAL``), changing the pragma
        only when it differs from the last commit's."""
        level = self.options.synchronous if durable else "normal"
        if level != self._sync_level:
            # On the driver's connection: through SQLAlchemy the statement would begin a
            # transaction first, and the level cannot change inside one.
            raw = conn.connection.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            raw.execute(f"PRAGMA synchronous = {level.upper()}")
            self._sync_level = level

    @staticmethod
    def _run_alone(conn: Connection, group: _Group, index: int) -> None:
        try:
            with conn.begin():
                group.results[index] = group.fns[index](conn)
        except Exception as exc:
            group.results[index] = None
            group.errors[index] = exc

    # -- reads ------------------------------------------------------------------------------
    async def read(self, fn: Callable[[Connection], T], what: str = "read") -> T:
        """Run ``fn(connection)`` in a read transaction in a worker thread and return its result.

        ``fn`` may share its transaction (one consistent snapshot) and its thread with the other
        reads pending at the same time. A WFE error it raises reaches only its caller; any other
        exception fails it alone too, and the reads after it in the group get a fresh
        transaction. A cancelled caller abandons its read: the group may still run it.
        """
        if self._read_engine is None:
            # In-memory: the single connection serves reads as well.
            return await self.write(fn, what)
        job: _Read[T] = _Read(fn)
        self._read_queue.append(job)
        try:
            while not job.done:
                if not job.taken and self._may_lead_reads():
                    await self._lead_reads()
                else:
                    # Until its group is done, or a group ends and this read is first in line.
                    job.wake = anyio.Event()
                    await job.wake.wait()
        except BaseException:
            if not job.taken:
                self._read_queue.remove(job)
            # It may have been woken to lead: pass that on.
            self._wake_next_reader()
            raise
        if job.error is not None:
            error = wrap_error(job.error, what)
            if error is job.error:
                raise error
            raise error from job.error
        return job.result  # type: ignore[return-value]

    @property
    def read_backlog(self) -> tuple[int, int]:
        """How many reads wait in line, and how many read groups run: ``(0, 0)`` when no
        read is under way (for tests and diagnostics)."""
        return len(self._read_queue), self._read_groups

    def _may_lead_reads(self) -> bool:
        """Whether a read in line may start a group now (see ``_SLOW_READ_GROUP``)."""
        if self._read_groups == 0:
            return True
        if self._read_groups >= self.options.read_connections:
            return False
        return time.monotonic() - self._read_started >= _SLOW_READ_GROUP

    async def _lead_reads(self) -> None:
        """Take the reads in line (up to ``max_batch_size``) and run them as one group."""
        batch = self._read_queue[: self.options.max_batch_size]
        del self._read_queue[: len(batch)]
        for job in batch:
            job.taken = True
        self._read_groups += 1
        self._read_started = time.monotonic()
        # More in line than one group takes: they may start another group beside it.
        self._wake_next_reader()
        if self._read_limiter is None:
            self._read_limiter = anyio.CapacityLimiter(self.options.read_connections)
        try:
            # Shielded: the others of the group wait for it even when this caller is cancelled.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._run_reads, batch, limiter=self._read_limiter)
        except BaseException as exc:  # pragma: no cover - thread start failures
            for job in batch:
                if not job.done and job.error is None:
                    job.error = exc
        finally:
            self._read_groups -= 1
            for job in batch:
                job.done = True
                if job.wake is not None:
                    job.wake.set()
            self._wake_next_reader()

    def _wake_next_reader(self) -> None:
        """Wake the first read in line to see whether it may lead a group."""
        if self._read_queue and self._read_groups < self.options.read_connections:
            wake = self._read_queue[0].wake
            if wake is not None:
                wake.set()

    def _run_reads(self, batch: list[_Read[Any]]) -> None:
        engine = self._read_engine
        if engine is None:
            error = ProviderError(f"{self.where} is closed")
            for job in batch:
                job.error = error
            return
        start = 0
        while start < len(batch):
            start = self._run_read_group(engine, batch, start)

    @staticmethod
    def _run_read_group(engine: Engine, batch: list[_Read[Any]], start: int) -> int:
        """Run ``batch[start:]`` in one read transaction, stopping after an operation that may
        have spoiled it; returns where it stopped."""
        ran = start
        try:
            with engine.connect() as conn:
                conn.begin()
                while ran < len(batch):
                    job = batch[ran]
                    ran += 1
                    try:
                        job.result = job.fn(conn)
                    except WfeError as exc:
                        job.error = exc
                    except Exception as exc:
                        # A database error may have ended the transaction (SQLite rolls it
                        # back for some errors): the next reads get a fresh one.
                        job.error = exc
                        break
        except Exception as exc:
            # Connecting or BEGIN failed: the reads not run yet fail with it. (The ones that
            # ran keep their results, even when ending the transaction failed.)
            for job in batch[ran:]:
                job.error = exc
            return len(batch)
        return ran

    # -- noticing other processes' changes ----------------------------------------------------
    def data_version(self) -> int | None:
        """A number that changes whenever a connection other than the watch one commits to
        the database (any process, this one included); ``None`` when it cannot tell.

        Waiters for other processes' work compare it between looks and query only when it
        changed. This is the one SQLite call made on the event loop: ``PRAGMA data_version``
        reads the WAL index in shared memory in microseconds, and with a zero busy timeout it
        never waits for a lock.
        """
        if self.target.is_memory:
            # Only this process can write an in-memory database, and its writers wake the
            # waiters themselves: nothing else ever changes it.
            return 0
        watch = self._watch
        if watch is None:
            return None
        try:
            row = watch.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else int(row[0])

    # -- in-process wake-ups ------------------------------------------------------------------
    def notify(self, channel: str) -> None:
        """Wake every task of this process waiting on ``channel``."""
        waiters = self._waiters.pop(channel, None)
        if waiters:
            for waiter in waiters:
                waiter.set()

    async def wait(self, channel: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`notify` on ``channel``; True when woken."""
        if timeout <= 0:
            return False
        waiter = anyio.Event()
        self._waiters.setdefault(channel, set()).add(waiter)
        try:
            with anyio.move_on_after(timeout):
                await waiter.wait()
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[channel]
        return waiter.is_set()


# The transactions begin on the driver's connection: through SQLAlchemy the BEGIN cost more
# than a lookup by key (every group, read or write, runs one).
def _begin_immediate(conn: Connection) -> None:
    # Take the write lock when the transaction starts, not at its first write: a deferred
    # transaction that read first could not upgrade without a SQLITE_BUSY_SNAPSHOT error.
    driver(conn).execute("BEGIN IMMEDIATE")


def _begin_deferred(conn: Connection) -> None:
    driver(conn).execute("BEGIN")


# -- the registry of open stores ---------------------------------------------------------------
_registry_lock = threading.Lock()
_registry: dict[tuple[DatabaseTarget, object], Store] = {}


async def acquire_store(target: DatabaseTarget, *, shared: bool = True) -> Store:
    """The open store of ``target`` shared in this event loop, opening it on first use.

    Per event loop: the group-commit state and the wake-ups belong to one loop (and a store
    left open by a finished loop is never handed to the next one). ``shared=False`` gives a
    store of its own (its own connections and wake-ups), which behaves towards the others
    like one in another process.
    """
    if not shared:
        store = Store(target)
        store.refs = 1
    else:
        key = (target, anyio.lowlevel.current_token())
        with _registry_lock:
            found = _registry.get(key)
            if found is None:
                found = _registry[key] = Store(target)
                found.registry_key = key
            found.refs += 1
        store = found
    try:
        await anyio.to_thread.run_sync(store.open_blocking)
    except BaseException:
        await release_store(store)
        raise
    return store


async def release_store(store: Store) -> None:
    """Drop one reference to ``store``; the last one closes it."""
    with _registry_lock:
        store.refs -= 1
        if store.refs > 0:
            return
        key = store.registry_key
        if key is not None and _registry.get(key) is store:
            del _registry[key]
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(store.close_blocking)
