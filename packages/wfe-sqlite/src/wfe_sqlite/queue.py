"""SQLite work queue: FIFO queues of ids in the database file, shared by processes."""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import anyio
from sqlalchemy import bindparam, func, select, text

from wfe_core.providers import capabilities as cap
from wfe_core.providers.queue import QueueMessage, QueueName, QueueProvider
from wfe_sqlite.base import SqliteProviderMixin
from wfe_sqlite.engine import from_us, now_us
from wfe_sqlite.schema import queue_items

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["SqliteQueue"]

logger = logging.getLogger(__name__)

_SECOND = 1_000_000

# Enqueue: the partial unique index on waiting items makes a second waiting copy a no-op.
_ENQUEUE = text(
    "INSERT OR IGNORE INTO wfe_queue (queue, item_id, receipt, visible_at, attempt, enqueued_at)"
    " VALUES (:queue, :item_id, NULL, :now, 0, :now)"
)
# Lapsed deliveries whose id is already waiting again: that waiting copy stands for both.
_DROP_LAPSED_DUPLICATES = text(
    "DELETE FROM wfe_queue WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
    " AND EXISTS (SELECT 1 FROM wfe_queue AS w"
    "  WHERE w.queue = wfe_queue.queue AND w.item_id = wfe_queue.item_id AND w.receipt IS NULL)"
)
# Other lapsed deliveries go back to the tail (in the order they lapsed), keeping their attempt
# count; INSERT OR IGNORE keeps one waiting copy when two lapsed deliveries share an id.
_REQUEUE_LAPSED = text(
    "INSERT OR IGNORE INTO wfe_queue (queue, item_id, receipt, visible_at, attempt, enqueued_at)"
    " SELECT queue, item_id, NULL, visible_at, attempt, enqueued_at FROM wfe_queue"
    " WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
    " ORDER BY visible_at, seq"
)
_DELETE_LAPSED = text(
    "DELETE FROM wfe_queue WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
)
# The claim: one UPDATE inside the write transaction (BEGIN IMMEDIATE), so no two consumers,
# in this process or another, ever get the same row. INDEXED BY: walking the waiting items in
# FIFO order stops at the first visible one; left to itself the planner may instead collect
# and sort every visible item, which costs a long backlog dearly on every dequeue.
_CLAIM = text(
    "UPDATE wfe_queue SET receipt = :receipt, attempt = attempt + 1, delivered_at = :now,"
    " visible_at = :deadline"
    " WHERE seq = (SELECT seq FROM wfe_queue INDEXED BY ix_wfe_queue_fifo"
    "  WHERE queue = :queue AND receipt IS NULL AND visible_at <= :now ORDER BY seq LIMIT 1)"
    " RETURNING item_id, attempt"
)
# When something next becomes due: a delayed item, or a delivery that lapses.
_NEXT_DUE = select(func.min(queue_items.c.visible_at)).where(
    queue_items.c.queue == bindparam("queue")
)
# A delivery counts only while it has not lapsed: a lapsed receipt can no longer be used.
_ACK = text("DELETE FROM wfe_queue WHERE receipt = :receipt AND visible_at > :now")
_TAKE_BACK = text(
    "DELETE FROM wfe_queue WHERE receipt = :receipt AND visible_at > :now"
    " RETURNING queue, item_id, attempt, enqueued_at"
)
_PUT_BACK = text(
    "INSERT OR IGNORE INTO wfe_queue (queue, item_id, receipt, visible_at, attempt, enqueued_at)"
    " VALUES (:queue, :item_id, NULL, :visible_at, :attempt, :enqueued_at)"
)
# Waiting ids, counting lapsed deliveries (which are waiting again) once per id.
_SIZE = text(
    "SELECT count(DISTINCT item_id) FROM wfe_queue"
    " WHERE queue = :queue AND (receipt IS NULL OR visible_at <= :now)"
)


class _Claim(NamedTuple):
    #: The claimed item, or None when nothing was visible.
    item_id: str | None
    attempt: int
    #: When it was claimed (µs since the epoch).
    at: int
    #: When nothing was claimed: when the next delayed item or lapsing delivery is due.
    next_due: int | None


def _claim(conn: Connection, *, queue: str, receipt: str, visibility_us: int) -> _Claim:
    """Reclaim lapsed deliveries, then claim the head of ``queue``."""
    now = now_us()
    params = {"queue": queue, "now": now}
    conn.execute(_DROP_LAPSED_DUPLICATES, params)
    if conn.execute(_REQUEUE_LAPSED, params).rowcount:
        conn.execute(_DELETE_LAPSED, params)
    row = conn.execute(
        _CLAIM, {"queue": queue, "now": now, "receipt": receipt, "deadline": now + visibility_us}
    ).first()
    if row is None:
        return _Claim(None, 0, now, _next_due(conn, queue))
    return _Claim(row.item_id, int(row.attempt), now, None)


def _next_due(conn: Connection, queue: str) -> int | None:
    value = conn.execute(_NEXT_DUE, {"queue": queue}).scalar()
    return None if value is None else int(value)


def _channel(queue: QueueName | str) -> str:
    return f"queue:{QueueName(queue).value}"


class SqliteQueue(SqliteProviderMixin, QueueProvider):
    """Queues of ids kept in the SQLite file, so every process using the file shares them.

    Each item is claimed by one ``UPDATE ... RETURNING`` in a write transaction, so an item is
    never handed to two consumers, in this process or another. A delivery not acked within
    its ``visibility_timeout`` goes back to the tail and is delivered again with
    ``attempt + 1``; its old receipt can no longer ack or requeue it. Deadlines are wall-clock
    times in the file, so a crashed process's deliveries come back after their timeout.

    :meth:`dequeue` wakes at once for items enqueued by this process; items enqueued by
    another process are found by polling (every ``poll_interval`` seconds at first, backing
    off to ``max_poll_interval``). A poll costs microseconds (SQLite's ``data_version`` tells
    whether anything was committed since the last look; only then is the table read), but it
    is polling, so the queue does not declare ``dequeue-blocks``.

    As in the in-memory queue, an id enqueued while it is in flight waits as a new item and
    may be handed to another consumer before the first acks; the engine's lock keeps two
    workers off one instance.
    """

    capabilities = frozenset({cap.DURABLE, cap.DISTRIBUTED, cap.QUEUE_REDELIVERY})

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        """Add ``item_id`` at the tail of ``queue``; a no-op when it is already waiting."""
        name = QueueName(queue).value

        def run(conn: Connection) -> None:
            conn.execute(_ENQUEUE, {"queue": name, "item_id": item_id, "now": now_us()})

        store = self.store
        await store.write(run, "enqueue")
        store.notify(_channel(name))

    async def dequeue(
        self,
        queue: QueueName,
        *,
        timeout: float = 0.0,
        visibility_timeout: float = 300.0,
    ) -> QueueMessage | None:
        """The first visible item of ``queue``, waiting up to ``timeout`` seconds for one."""
        store = self.store
        options = store.options
        name = QueueName(queue).value
        channel = _channel(name)
        visibility_us = max(int(visibility_timeout * _SECOND), 0)
        deadline = anyio.current_time() + max(timeout, 0.0)
        interval = options.poll_interval
        claim_now = True
        # The database's data_version at the last look, and what that look found: when the
        # next delayed item or lapsing delivery is due (µs), None when the queue was empty.
        seen: int | None = None
        next_due: int | None = None
        while True:
            # Read before looking, so a commit made during the look shows at the next one.
            version = store.data_version()
            if claim_now:
                receipt = uuid.uuid4().hex
                # Not synced: a claim lost in a power failure only means a redelivery.
                claim = await store.write(
                    partial(_claim, queue=name, receipt=receipt, visibility_us=visibility_us),
                    "dequeue",
                    durable=False,
                )
                if claim.item_id is not None:
                    return QueueMessage(
                        queue=QueueName(name),
                        item_id=claim.item_id,
                        receipt=receipt,
                        attempt=claim.attempt,
                        delivered_at=from_us(claim.at),
                    )
                seen, next_due, claim_now = version, claim.next_due, False
            elif version is None or version != seen:
                # Something was committed (maybe by another process): a cheap read, without
                # the write lock, tells whether anything is due.
                next_due = await store.read(partial(_next_due, queue=name), "dequeue")
                seen = version
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return None
            until_due = None if next_due is None else (next_due - now_us()) / _SECOND
            if until_due is not None and until_due <= 0:
                claim_now = True
                continue
            # Sleep until an enqueue in this process, the next look for other processes'
            # work, or the moment the next delayed item (or lapsing delivery) is due.
            pause = min(interval, remaining)
            if until_due is not None:
                pause = min(pause, until_due)
            if await store.wait(channel, pause):
                interval = options.poll_interval
                claim_now = True
            else:
                interval = min(interval * 2, options.max_poll_interval)

    async def ack(self, message: QueueMessage) -> None:
        """Forget the delivery for good; a no-op for a receipt that is not in flight."""
        receipt = message.receipt

        def run(conn: Connection) -> None:
            conn.execute(_ACK, {"receipt": receipt, "now": now_us()})

        # Not synced: an ack lost in a power failure only means a redelivery.
        await self.store.write(run, "ack", durable=False)

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Put the delivered item back at the tail, visible after ``delay`` seconds.

        A no-op for a receipt that is not in flight (acked, or lapsed and redelivered). When
        the id is already waiting again, that waiting copy stands for both.
        """
        receipt = message.receipt
        delay_us = max(int(delay * _SECOND), 0)

        def run(conn: Connection) -> bool:
            now = now_us()
            row = conn.execute(_TAKE_BACK, {"receipt": receipt, "now": now}).first()
            if row is None:
                return False
            conn.execute(
                _PUT_BACK,
                {
                    "queue": row.queue,
                    "item_id": row.item_id,
                    "visible_at": now + delay_us,
                    "attempt": row.attempt,
                    "enqueued_at": row.enqueued_at,
                },
            )
            return True

        store = self.store
        # Not synced: a requeue lost in a power failure leaves the delivery in flight, and it
        # comes back when its visibility timeout lapses.
        if await store.write(run, "requeue", durable=False):
            store.notify(_channel(message.queue))

    async def size(self, queue: QueueName) -> int:
        """Items waiting in ``queue`` (delayed ones included, deliveries in flight not)."""
        name = QueueName(queue).value

        def run(conn: Connection) -> int:
            count: int = conn.execute(_SIZE, {"queue": name, "now": now_us()}).scalar_one()
            return count

        return await self.store.read(run, "size")
