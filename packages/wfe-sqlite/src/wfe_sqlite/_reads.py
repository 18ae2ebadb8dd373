"""Grouped reads: the reads of one database, run on its pool of reader connections.

In WAL mode reads do not wait for writers. They are grouped like writes: the reads pending
together run in one reader thread call and one read transaction (one snapshot), since the hop
to a thread and back costs more CPU than a read by id. The reads arriving while a group runs
wait to form the next one, unless that group has run for a few milliseconds (a long read):
then they start another beside it, up to ``read_connections`` groups at once. An operation
that fails does not fail the others of its group (see :meth:`GroupedReads.read`).

An in-memory database has no readers: its store sends reads to the writer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from wfe_core.errors import ProviderError, WfeError
from wfe_sqlite._errors import wrap_error
from wfe_sqlite._threads import StoreThreads

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection, Engine

    from wfe_sqlite._connections import Connections

T = TypeVar("T")

#: Seconds a read group runs before reads arriving meanwhile start another group beside it
#: instead of waiting to form the next one: larger groups cost less CPU, but a long read
#: (a big list) should not hold up the short ones for long.
_SLOW_READ_GROUP = 0.005


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


class GroupedReads:
    """The read side of one database file's store; used from one event loop (plus the
    worker threads it starts)."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        options = connections.target.options
        self.read_connections = options.read_connections
        self.max_batch_size = options.max_batch_size
        # Touched only on the event loop thread.
        #: The reads not taken into a group yet.
        self.queue: list[_Read[Any]] = []
        #: How many groups are running.
        self.running = 0
        # When the last group started (time.monotonic()).
        self._read_started = 0.0
        #: The readers' threads: one per reader connection, started as groups need them.
        self.threads = StoreThreads("reader", self.read_connections, connections.where)

    async def read(self, fn: Callable[[Connection], T], what: str = "read") -> T:
        """Run ``fn(connection)`` in a read transaction in a reader thread and return its result.

        ``fn`` may share its transaction (one consistent snapshot) and its thread with the other
        reads pending at the same time. A WFE error it raises reaches only its caller; any other
        exception fails it alone too, and the reads after it in the group get a fresh
        transaction. A cancelled caller abandons its read: the group may still run it.
        """
        job: _Read[T] = _Read(fn)
        self.queue.append(job)
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
                self.queue.remove(job)
            # It may have been woken to lead: pass that on.
            self._wake_next_reader()
            raise
        if job.error is not None:
            error = wrap_error(job.error, what)
            if error is job.error:
                raise error
            raise error from job.error
        return job.result  # type: ignore[return-value]

    def _may_lead_reads(self) -> bool:
        """Whether a read in line may start a group now (see ``_SLOW_READ_GROUP``)."""
        if self.running == 0:
            return True
        if self.running >= self.read_connections:
            return False
        return time.monotonic() - self._read_started >= _SLOW_READ_GROUP

    async def _lead_reads(self) -> None:
        """Take the reads in line (up to ``max_batch_size``) and run them as one group."""
        batch = self.queue[: self.max_batch_size]
        del self.queue[: len(batch)]
        for job in batch:
            job.taken = True
        self.running += 1
        self._read_started = time.monotonic()
        # More in line than one group takes: they may start another group beside it.
        self._wake_next_reader()
        try:
            # Shielded: the others of the group wait for it even when this caller is cancelled.
            with anyio.CancelScope(shield=True):
                await self.threads.run(self.run_blocking, batch)
        except BaseException as exc:
            # The store is closed, or the thread failed in a way run_blocking does not catch.
            for job in batch:
                if not job.done and job.error is None:
                    job.error = exc
        finally:
            self.running -= 1
            for job in batch:
                job.done = True
                if job.wake is not None:
                    job.wake.set()
            self._wake_next_reader()

    def _wake_next_reader(self) -> None:
        """Wake the first read in line to see whether it may lead a group."""
        if self.queue and self.running < self.read_connections:
            wake = self.queue[0].wake
            if wake is not None:
                wake.set()

    def run_blocking(self, batch: list[_Read[Any]]) -> None:
        """Run ``batch`` in as few read transactions as its failures allow (blocking: in
        a reader thread)."""
        engine = self._connections.read_engine
        if engine is None:
            error = ProviderError(f"{self._connections.where} is closed")
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
