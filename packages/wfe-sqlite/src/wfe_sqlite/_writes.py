"""Group commit: the writes of one database, committed together on its one writer.

Callers add their operation to the last group in line (up to ``max_batch_size`` each); when a
group's turn comes, the caller of its first operation (the *leader*) runs it in the writer's
thread as ONE transaction (``BEGIN IMMEDIATE``) and commits once, while the other callers
wait for the group to be done: operations arriving while a transaction is being written share
the next commit and its sync, which is what makes ``synchronous=FULL`` fast under load. An
operation that fails does not fail the others of its group (see :meth:`GroupCommit.write`).
No caller returns before the commit that holds its write is done, and synced unless the write
was marked as one whose loss could only cause a redelivery.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from wfe_core.errors import ProviderError, WfeError
from wfe_sqlite._connections import driver
from wfe_sqlite._errors import wrap_error
from wfe_sqlite._threads import StoreThreads

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from sqlalchemy import Connection

    from wfe_sqlite._connections import Connections

T = TypeVar("T")


class _Group:
    """Write operations committed together (up to ``max_batch_size``, in arrival order).

    The caller of the first one leads the group when its turn comes (runs it in the writer
    thread); the others wait for ``done``. One object and two events per group rather than an
    object and an event per operation: on the event loop a write costs an append and one
    wake-up, and it leaves fewer objects for the garbage collector to promote and scan. The
    events are made only when someone waits for them (a lone write, led at once, needs
    neither: they were a sixth of its cost on the loop).
    """

    __slots__ = ("done", "durable", "errors", "finished", "fns", "lead", "results")

    def __init__(self) -> None:
        self.fns: list[Callable[[Connection], Any]] = []
        #: Whether any of them must be synced (see :meth:`GroupCommit.write`'s ``durable``).
        self.durable = False
        #: Filled by the writer thread: ``results[i]`` of ``fns[i]`` unless ``errors`` has ``i``.
        self.results: list[Any] = []
        self.errors: dict[int, BaseException] = {}
        #: Run (or failed as a whole) and ``done`` set.
        self.finished = False
        #: Set once it ran; made by the first caller after the first one (who waits for it).
        self.done: anyio.Event | None = None
        #: Set when the first operation's caller may lead the group; made by that caller when
        #: it has to wait (another group is being led), before it waits.
        self.lead: anyio.Event | None = None


class _GroupFailure(Exception):
    """An operation of a group failed in a way that may have spoiled the whole transaction."""


class GroupCommit:
    """The write side of one database's store; used from one event loop (plus the writer
    thread it starts)."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        options = connections.target.options
        self.max_batch_size = options.max_batch_size
        self._synchronous: str = options.synchronous
        # The writer's current PRAGMA synchronous (see write's ``durable``).
        self._sync_level: str = options.synchronous
        # Touched only on the event loop thread: the groups not taken by a leader yet, oldest
        # first, and whether a group is being led. While one is, every group in line has a
        # first caller waiting for its ``lead``; while none is, the line is empty.
        self._groups: deque[_Group] = deque()
        self._leading = False
        #: The writer's thread (one: the transactions run one at a time anyway).
        self.thread = StoreThreads("writer", 1, connections.where)

    async def write(
        self, fn: Callable[[Connection], T], what: str = "write", *, durable: bool = True
    ) -> T:
        """Run ``fn(connection)`` in a write transaction and return its result once committed.

        ``fn`` runs in the writer's thread inside a transaction it may share with other
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
        if groups and len(groups[-1].fns) < self.max_batch_size:
            group = groups[-1]
        else:
            group = _Group()
            groups.append(group)
        index = len(group.fns)
        group.fns.append(fn)
        if durable:
            group.durable = True
        # Made before the first await (see _Group): the leader sets what exists when it ends.
        if index:
            if group.done is None:
                group.done = anyio.Event()
            waited = group.done
        elif self._leading:
            waited = group.lead = anyio.Event()
        else:
            waited = None
        try:
            if waited is not None:
                await waited.wait()
        except BaseException:
            # Cancelled while waiting. Once queued, the write happens (as a database call in
            # a thread would), and its caller still returns only after the commit holding it;
            # the first caller of a group leads it, since the others wait for it. Shielded
            # only here and while leading: a shield costs more than the rest of a write.
            assert waited is not None
            with anyio.CancelScope(shield=True):
                await waited.wait()
                if not index:
                    await self._lead(group)
            raise
        if not index:
            # To the end: the others of the group wait for it even when this caller is
            # cancelled (see _lead).
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
        cancelled: BaseException | None = None
        try:
            # A cancellation of this caller is raised once the group ran (``to_the_end``),
            # after the lead is handed on: the group's results stand.
            await self.thread.run(self._run_batch, group, to_the_end=True)
        except anyio.get_cancelled_exc_class() as exc:
            cancelled = exc
        except BaseException as exc:
            # The store is closed, or the thread failed in a way _run_batch does not catch.
            for index in range(len(group.fns)):
                group.errors.setdefault(index, exc)
        finally:
            group.finished = True
            if group.done is not None:
                group.done.set()
            if self._groups:
                lead = self._groups[0].lead
                # Every group in line while one is led has its first caller waiting on it.
                assert lead is not None
                lead.set()
            else:
                self._leading = False
        if cancelled is not None:
            raise cancelled

    def _run_batch(self, group: _Group) -> None:
        with self._connections.writer_lock:
            self._run_batch_locked(group)

    def _run_batch_locked(self, group: _Group) -> None:
        fns = group.fns
        errors = group.errors
        group.results = results = [None] * len(fns)
        conn = self._connections.writer
        if conn is None:
            error = ProviderError(f"{self._connections.where} is closed")
            for index in range(len(fns)):
                errors[index] = error
            return
        self._set_sync(conn, group.durable)
        if len(fns) == 1:
            self._run_alone(conn, group, 0)
            return
        raw = driver(conn)
        try:
            _begin(raw)
            try:
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
            except BaseException:
                _rollback(conn, raw)
                raise
            _commit(conn, raw)
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
        level = self._synchronous if durable else "normal"
        if level != self._sync_level:
            # On the driver's connection: through SQLAlchemy the statement would begin a
            # transaction first, and the level cannot change inside one.
            driver(conn).execute(f"PRAGMA synchronous = {level.upper()}")
            self._sync_level = level

    @staticmethod
    def _run_alone(conn: Connection, group: _Group, index: int) -> None:
        raw = driver(conn)
        try:
            _begin(raw)
            try:
                group.results[index] = group.fns[index](conn)
            except BaseException:
                _rollback(conn, raw)
                raise
            _commit(conn, raw)
        except Exception as exc:
            group.results[index] = None
            group.errors[index] = exc


# The write transactions are begun and ended on the driver's connection: through
# SQLAlchemy's ``conn.begin()`` they cost about 20 µs more each (its events and transaction
# objects), on the path of every step. An ``fn`` may still run statements through
# SQLAlchemy: its autobegin finds the transaction open (see ``_begin_immediate`` in
# ``_connections``) and SQLAlchemy's own transaction is ended with it.
def _begin(raw: sqlite3.Connection) -> None:
    # Takes the write lock at once (see _connections._begin_immediate).
    raw.execute("BEGIN IMMEDIATE")


def _commit(conn: Connection, raw: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction():
            conn.commit()  # commits the driver's transaction too
        else:
            raw.commit()
    except BaseException:
        # A failed COMMIT (busy, I/O error) leaves the transaction open in SQLite.
        _rollback(conn, raw)
        raise


def _rollback(conn: Connection, raw: sqlite3.Connection) -> None:
    with contextlib.suppress(Exception):
        if conn.in_transaction():
            conn.rollback()
        # Also when SQLAlchemy's ended without reaching the driver (a closed connection).
        if raw.in_transaction:
            raw.rollback()
