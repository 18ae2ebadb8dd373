"""Group commit for PostgreSQL (internal): concurrent short statements of one process sent
in one round trip and committed by one commit.

A host running many workflows at once makes many small writes at once (an instance's step,
a lease taken or given back), each a round trip and, with ``fsync`` on, a commit waiting for
the disk. :class:`StatementBatcher` sends a statement at once when fewer than
``max_in_flight`` batches are on their way (the cost of a lone statement stays what it
was), and otherwise queues it; when a batch on its way is done, the first queued statement's
task sends everything queued meanwhile (up to ``max_batch``) as one transaction in a
pipeline: one round trip, one commit, one wait for the disk. So the more work arrives at
once, the larger the batches and the fewer the round trips per statement, which is what
wfe-sqlite's group commit does for its file. Two batches on their way at once (each on a
connection of its own) keep the server busy while the client reads one's results and fills
the next: measured on the shared 2-core machine, one at a time left throughput 10-30% lower,
four cost more client CPU for no more throughput (more statements went out alone).

What may be batched: single statements whose failure is theirs alone to report and which
are safe in a transaction with others (no ``now()``-sensitive long waits, no DDL). A batch
whose transaction fails for any reason other than a transient one (a unique violation in
one write aborts them all) is run again one statement at a time, so each caller gets its
own result or error; transient errors (a lost connection) are retried by
:meth:`Database.run <wfe_postgres._database.Database.run>` as for any statement. Each
statement's rows (``fetchall``, empty without ``RETURNING``) go back to its caller.

Statements of one kind in a batch may also be sent as **one statement** (a :class:`Merge`
given with them: the instance writes of many workflows as one multi-row ``UPDATE``): every
statement costs the client a cursor, the adaptation of its parameters and the reading of
its result, and the server a bind and an executor start, whatever it holds. The merged
statement gives each caller the rows its own would have given; when it fails, each runs alone
as above.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import psycopg

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_postgres._database import Connection, Database

__all__ = ["Merge", "StatementBatcher", "batcher_of"]

logger = logging.getLogger(__name__)

Rows = list[tuple[Any, ...]]

#: Statements in one batch at most: a larger one holds its row locks longer.
MAX_BATCH = 64
#: Batches on their way at once at most (each on a connection of its own, so the server runs
#: them in parallel and flushes their commits together), and never more than half the pool:
#: reads need connections too.
MAX_IN_FLIGHT = 2


class Merge(Protocol):
    """How statements of one kind are sent as one (see the module): the same object is given
    with each of them."""

    def key(self, params: Any) -> Any:
        """What may not occur twice in one merged statement (the instance a write is of):
        a second statement with the same key is sent on its own, after the merged one."""

    def merged(self, params: list[Any]) -> tuple[Any, Any]:
        """The statement and parameters doing what the statements of ``params`` do."""

    def split(self, rows: Rows, count: int) -> list[Rows]:
        """The rows each of the ``count`` statements would have given, in their order."""


class _Item:
    __slots__ = ("error", "errors", "lead", "merge", "params", "rows", "statement", "taken", "wake")

    def __init__(
        self,
        statement: Any,
        params: Any,
        errors: Callable[[psycopg.Error], BaseException | None] | None,
        merge: Merge | None,
    ) -> None:
        self.statement = statement
        self.params = params
        self.errors = errors
        self.merge = merge
        #: Set when its batch is done, or when it is handed the lead of the next one.
        self.wake = anyio.Event()
        self.rows: Rows = []
        self.error: BaseException | None = None
        #: Handed the lead: this item's task sends the next batch.
        self.lead = False
        #: In a batch on its way (no longer cancellable without losing track of it).
        self.taken = False

    def result(self) -> Rows:
        if self.error is not None:
            raise self.error
        return self.rows


async def _rows(conn: Connection, statement: Any, params: Any) -> Rows:
    cursor = await conn.execute(statement, params)
    if cursor.description is None:
        return []
    rows: Rows = await cursor.fetchall()
    return rows


class StatementBatcher:
    """Sends the short statements of one :class:`Database` in batches (see the module)."""

    def __init__(
        self, database: Database, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self.database = database
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: list[_Item] = []
        #: Batches (or lone statements) on their way.
        self._in_flight = 0
        #: Statements sent and batches sent (of more than one statement), for tests and
        #: measurements.
        self.statements = 0
        self.batches = 0
        #: Statements sent merged into another's (see Merge).
        self.merged = 0

    async def run(
        self,
        statement: Any,
        params: Any,
        what: str,
        *,
        errors: Callable[[psycopg.Error], BaseException | None] | None = None,
        merge: Merge | None = None,
    ) -> Rows:
        """Run ``statement`` with ``params`` (alone, or in the next batch) and return its
        rows. ``errors`` maps a driver error of this statement to the caller's error;
        ``merge`` lets it be sent merged with others of its kind in the batch."""
        item = _Item(statement, params, errors, merge)
        if self._in_flight >= self.max_in_flight:
            self._pending.append(item)
            try:
                await item.wake.wait()
            except BaseException:
                if not item.taken:
                    # Not sent: forget it, and pass on the lead if it was just handed over.
                    self._pending.remove(item)
                    if item.lead:
                        self._hand_on()
                raise
            if not item.lead:
                return item.result()  # sent in another's batch
            self._pending.remove(item)
        else:
            self._in_flight += 1
        try:
            # This statement and the ones queued meanwhile, but those handed the lead of a
            # batch of their own.
            batch = [item]
            kept: list[_Item] = []
            for queued in self._pending:
                if queued.lead or len(batch) >= self.max_batch:
                    kept.append(queued)
                else:
                    batch.append(queued)
            self._pending = kept
            for queued in batch:
                queued.taken = True
            # Shielded: the other statements of the batch are not this caller's to cancel.
            with anyio.CancelScope(shield=True):
                await self._send(batch, what)
        finally:
            self._hand_on()
        return item.result()

    def _hand_on(self) -> None:
        """A batch on its way is done: the first queued statement's task sends the next (it
        takes this batch's place among those on their way)."""
        for waiting in self._pending:
            if not waiting.lead:
                waiting.lead = True
                waiting.wake.set()
                return
        self._in_flight -= 1

    async def _send(self, batch: list[_Item], what: str) -> None:
        try:
            if len(batch) == 1:
                await self._one(batch[0], what)
                return
            self.batches += 1
            self.statements += len(batch)
            try:
                results = await self.database.run(
                    lambda conn: self._pipelined(conn, batch),
                    f"{what} (batched)",
                    transaction=False,
                )
            except Exception as exc:
                # Not transient (those were retried): maybe one statement's failure aborted
                # the others. Each alone, so each caller gets its own outcome.
                logger.debug("a batch of %d failed (%s); running each alone", len(batch), exc)
                for item in batch:
                    await self._one(item, what)
                return
            for item, rows in zip(batch, results, strict=True):
                item.rows = rows
        finally:
            for item in batch:
                item.wake.set()

    async def _pipelined(self, conn: Connection, batch: list[_Item]) -> list[Rows]:
        # One transaction, so one commit (one wait for the disk) for the batch; in a
        # pipeline, so BEGIN, the statements and COMMIT go out before any result is read:
        # one round trip.
        sent = _merged(batch)
        self.merged += len(batch) - len(sent)
        cursors = []
        async with conn.pipeline() as pipeline:
            async with conn.transaction():
                for statement, params, _ in sent:
                    cursors.append(await conn.execute(statement, params))
            await pipeline.sync()
            results: list[Rows] = [[] for _ in batch]
            for cursor, (_, _, parts) in zip(cursors, sent, strict=True):
                rows: Rows = [] if cursor.description is None else await cursor.fetchall()
                if len(parts) == 1:
                    results[parts[0]] = rows
                    continue
                merge = batch[parts[0]].merge
                assert merge is not None
                for index, part in zip(parts, merge.split(rows, len(parts)), strict=True):
                    results[index] = part
        return results

    async def _one(self, item: _Item, what: str) -> None:
        self.statements += 1
        mapper = item.errors

        async def run(conn: Connection) -> Rows:
            if mapper is None:
                return await _rows(conn, item.statement, item.params)
            try:
                return await _rows(conn, item.statement, item.params)
            except psycopg.Error as exc:
                mapped = mapper(exc)
                if mapped is None:
                    raise
                raise mapped from None

        try:
            item.rows = await self.database.run(run, what, transaction=False)
        except Exception as exc:
            item.error = exc


def _merged(batch: list[_Item]) -> list[tuple[Any, Any, list[int]]]:
    """What to send for ``batch``: each statement, or several of one kind merged (in the
    place of the first), with the positions in the batch of the statements each stands for.
    A statement whose key is already in the merged one goes after it, alone."""
    sent: list[tuple[Any, Any, list[int]]] = []
    #: Per kind (its Merge: the statements of a write with and without pointer rows differ,
    #: their merged statement is one): its place in ``sent``, the positions merged, their keys.
    groups: dict[int, tuple[int, list[int], set[Any]]] = {}
    for index, item in enumerate(batch):
        merge = item.merge
        if merge is not None:
            kind = id(merge)
            key = merge.key(item.params)
            group = groups.get(kind)
            if group is None:
                groups[kind] = (len(sent), [index], {key})
            elif key not in group[2]:
                group[1].append(index)
                group[2].add(key)
                continue
        sent.append((item.statement, item.params, [index]))
    for place, members, _ in groups.values():
        if len(members) > 1:
            merge = batch[members[0]].merge
            assert merge is not None
            statement, params = merge.merged([batch[i].params for i in members])
            sent[place] = (statement, params, members)
    return sent


_batchers: weakref.WeakKeyDictionary[Database, StatementBatcher] = weakref.WeakKeyDictionary()


def batcher_of(database: Database) -> StatementBatcher:
    """The batcher of ``database``, shared by every provider using it (the persistence, the
    queue and the lock of one URL in one process batch together)."""
    found = _batchers.get(database)
    if found is None:
        in_flight = max(1, min(MAX_IN_FLIGHT, database.target.options.max_pool_size // 2))
        found = _batchers[database] = StatementBatcher(database, MAX_BATCH, in_flight)
    return found
