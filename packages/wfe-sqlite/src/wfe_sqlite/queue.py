"""SQLite work queue: FIFO queues of ids in the database file, shared by processes."""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import anyio
from sqlalchemy import text

from wfe_core.errors import WfeError
from wfe_core.providers import QueueMessage, QueueName, QueueProvider
from wfe_core.providers import capabilities as cap
from wfe_sqlite.base import SqliteProviderMixin
from wfe_sqlite.engine import driver, from_us, now_us
from wfe_sqlite.options import DEFAULT_URL

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from wfe_sqlite.options import SqliteOptions

__all__ = ["SqliteQueue"]

logger = logging.getLogger(__name__)

_SECOND = 1_000_000
#: Dequeues with a shorter visibility timeout claim one item at a time: a prefetched item's
#: timeout runs from its claim, so it must be long next to the time it may wait here.
_PREFETCH_MIN_VISIBILITY = 10.0

# The statements run for every item (enqueue, claim, ack) are plain SQL run on the driver's
# connection (see wfe_sqlite.engine.driver), with named parameters as sqlite3 takes them.

# Enqueue: the partial unique index on waiting items allows one waiting copy per id; when
# there is one, it keeps its place and, if it was delayed (a busy retry), becomes visible now.
_ENQUEUE = (
    "INSERT INTO wfe_queue (queue, item_id, receipt, visible_at, attempt, enqueued_at)"
    " VALUES (:queue, :item_id, NULL, :now, 0, :now)"
    " ON CONFLICT (queue, item_id) WHERE receipt IS NULL"
    " DO UPDATE SET visible_at = excluded.visible_at"
    " WHERE wfe_queue.visible_at > excluded.visible_at"
)
# Whether any delivery has lapsed: almost never, so one cheap look (on the partial index of
# deliveries) spares the claim the two statements that take lapsed deliveries back.
_ANY_LAPSED = (
    "SELECT 1 FROM wfe_queue WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
    " LIMIT 1"
)
# Lapsed deliveries whose id is already waiting again: that waiting copy stands for both.
_DROP_LAPSED_DUPLICATES = (
    "DELETE FROM wfe_queue WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
    " AND EXISTS (SELECT 1 FROM wfe_queue AS w"
    "  WHERE w.queue = wfe_queue.queue AND w.item_id = wfe_queue.item_id AND w.receipt IS NULL)"
)
# Other lapsed deliveries go back to the tail (in the order they lapsed), keeping their attempt
# count; INSERT OR IGNORE keeps one waiting copy when two lapsed deliveries share an id.
_REQUEUE_LAPSED = (
    "INSERT OR IGNORE INTO wfe_queue (queue, item_id, receipt, visible_at, attempt, enqueued_at)"
    " SELECT queue, item_id, NULL, visible_at, attempt, enqueued_at FROM wfe_queue"
    " WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
    " ORDER BY visible_at, seq"
)
_DELETE_LAPSED = (
    "DELETE FROM wfe_queue WHERE queue = :queue AND receipt IS NOT NULL AND visible_at <= :now"
)
# The claim: one UPDATE inside the write transaction (BEGIN IMMEDIATE), so no two consumers,
# in this process or another, ever get the same row. It takes up to :limit items at the head
# (see SqliteOptions.prefetch), each with its own receipt. INDEXED BY: walking the waiting
# items in FIFO order stops at the first visible ones; left to itself the planner may instead
# collect and sort every visible item, which costs a long backlog dearly on every dequeue.
_CLAIM = (
    "UPDATE wfe_queue SET receipt = :receipt || '-' || seq, attempt = attempt + 1,"
    " delivered_at = :now, visible_at = :deadline"
    " WHERE seq IN (SELECT seq FROM wfe_queue INDEXED BY ix_wfe_queue_fifo"
    "  WHERE queue = :queue AND receipt IS NULL AND visible_at <= :now ORDER BY seq"
    "  LIMIT :limit)"
    " RETURNING seq, item_id, attempt, receipt"
)
# Giving back claimed items that were never handed out: in place (same FIFO position, the
# attempt not counted), or dropped when the id is waiting again anyway.
_UNCLAIM_DUPLICATE = text(
    "DELETE FROM wfe_queue WHERE receipt = :receipt AND EXISTS (SELECT 1 FROM wfe_queue AS w"
    "  WHERE w.queue = wfe_queue.queue AND w.item_id = wfe_queue.item_id AND w.receipt IS NULL)"
)
_UNCLAIM = text(
    "UPDATE wfe_queue SET receipt = NULL, attempt = attempt - 1, visible_at = :now,"
    " delivered_at = NULL WHERE receipt = :receipt"
)
# When something next becomes due: a delayed item, or a delivery that lapses.
_NEXT_DUE = "SELECT min(visible_at) FROM wfe_queue WHERE queue = ?"
# A delivery counts only while it has not lapsed: a lapsed receipt can no longer be used.
_ACK = "DELETE FROM wfe_queue WHERE receipt = :receipt AND visible_at > :now"
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


class _Claimed(NamedTuple):
    """An item claimed for this process: handed out now, or kept for a later dequeue."""

    item_id: str
    receipt: str
    attempt: int
    #: When it was claimed, and when its delivery lapses (µs since the epoch).
    at: int
    deadline: int


class _Claim(NamedTuple):
    #: The claimed items in FIFO order (empty when nothing was visible).
    items: list[_Claimed]
    #: When nothing was claimed: when the next delayed item or lapsing delivery is due.
    next_due: int | None


def _claim(conn: Connection, *, queue: str, receipt: str, visibility_us: int, limit: int) -> _Claim:
    """Reclaim lapsed deliveries, then claim up to ``limit`` items at the head of ``queue``."""
    raw = driver(conn)
    now = now_us()
    params = {"queue": queue, "now": now}
    if raw.execute(_ANY_LAPSED, params).fetchone() is not None:
        raw.execute(_DROP_LAPSED_DUPLICATES, params)
        if raw.execute(_REQUEUE_LAPSED, params).rowcount:
            raw.execute(_DELETE_LAPSED, params)
    deadline = now + visibility_us
    rows = raw.execute(
        _CLAIM,
        {"queue": queue, "now": now, "receipt": receipt, "deadline": deadline, "limit": limit},
    ).fetchall()
    if not rows:
        return _Claim([], _next_due(conn, queue))
    # RETURNING does not promise an order: FIFO is the order of seq.
    rows.sort()
    return _Claim(
        [
            _Claimed(item_id, item_receipt, int(attempt), now, deadline)
            for _, item_id, attempt, item_receipt in rows
        ],
        None,
    )


def _unclaim(conn: Connection, *, receipts: list[str]) -> None:
    now = now_us()
    for receipt in receipts:
        conn.execute(_UNCLAIM_DUPLICATE, {"receipt": receipt})
        conn.execute(_UNCLAIM, {"receipt": receipt, "now": now})


def _next_due(conn: Connection, queue: str) -> int | None:
    value = driver(conn).execute(_NEXT_DUE, (queue,)).fetchone()[0]
    return None if value is None else int(value)


# Receipts: a random prefix per interpreter, the process id (forked children inherit the
# prefix), and a counter; the claim appends the row's seq. Unique without a call to the
# system's random source per claim (uuid4 costs tens of microseconds on some machines).
_RECEIPT_PREFIX = uuid.uuid4().hex[:12]
_receipts = itertools.count()


def _new_receipt() -> str:
    return f"{_RECEIPT_PREFIX}{os.getpid():x}.{next(_receipts):x}"


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

    A dequeue with a ``visibility_timeout`` of 10 s or more claims up to ``prefetch`` items
    in one write and keeps the extra ones for this provider's next dequeues (they still count
    as waiting in its :meth:`size`); closing the provider gives back those not handed out.
    """

    capabilities = frozenset({cap.DURABLE, cap.DISTRIBUTED, cap.QUEUE_REDELIVERY})

    def __init__(
        self,
        url: str | None = DEFAULT_URL,
        options: SqliteOptions | None = None,
        *,
        share_connections: bool = True,
    ) -> None:
        super().__init__(url, options, share_connections=share_connections)
        # Per queue: items claimed by this provider, not handed out yet (see prefetch).
        self._prefetched: dict[str, deque[_Claimed]] = {}

    def _is_prefetched(self, name: str, item_id: str) -> bool:
        return any(item.item_id == item_id for item in self._prefetched.get(name, ()))

    async def close(self) -> None:
        """Give back the items claimed but not handed out, then release the database."""
        try:
            if self._store is not None:
                with anyio.CancelScope(shield=True):
                    for name in list(self._prefetched):
                        await self._give_back(name)
        except WfeError:
            # They come back anyway when their visibility timeout lapses.
            logger.warning("could not give back prefetched queue items", exc_info=True)
        finally:
            self._prefetched.clear()
            await super().close()

    async def _give_back(self, name: str) -> None:
        """Return the prefetched items of queue ``name`` to the waiting ones, in place."""
        items = self._prefetched.pop(name, None)
        if items:
            receipts = [item.receipt for item in items]
            await self.store.write(partial(_unclaim, receipts=receipts), "dequeue", durable=False)

    async def _take_prefetched(self, name: str, visibility_us: int) -> QueueMessage | None:
        """The next prefetched item of ``name``, if one is left with enough of its visibility
        timeout (at least half the caller's); otherwise every prefetched item goes back."""
        items = self._prefetched.get(name)
        if not items:
            return None
        item = items[0]
        if item.deadline - now_us() < visibility_us // 2:
            await self._give_back(name)
            return None
        items.popleft()
        return QueueMessage(
            queue=QueueName(name),
            item_id=item.item_id,
            receipt=item.receipt,
            attempt=item.attempt,
            delivered_at=from_us(item.at),
        )

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        """Add ``item_id`` at the tail of ``queue``. When it is already waiting, that copy
        stands for both: it keeps its place, and becomes visible now if it was delayed."""
        name = QueueName(queue).value
        if self._is_prefetched(name, item_id):
            return  # claimed ahead by this provider but not handed out: it is still waiting

        def run(conn: Connection) -> None:
            driver(conn).execute(_ENQUEUE, {"queue": name, "item_id": item_id, "now": now_us()})

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
        limit = options.prefetch if visibility_timeout >= _PREFETCH_MIN_VISIBILITY else 1
        while True:
            message = await self._take_prefetched(name, visibility_us)
            if message is not None:
                return message
            # Read before looking, so a commit made during the look shows at the next one
            # (not when there is no next look).
            version = store.data_version() if timeout > 0 else None
            if claim_now:
                # Not synced: a claim lost in a power failure only means a redelivery.
                claim = await store.write(
                    partial(
                        _claim,
                        queue=name,
                        receipt=_new_receipt(),
                        visibility_us=visibility_us,
                        limit=limit,
                    ),
                    "dequeue",
                    durable=False,
                )
                if claim.items:
                    first, *rest = claim.items
                    if rest:
                        self._prefetched.setdefault(name, deque()).extend(rest)
                        # Other dequeue calls waiting on this provider can have them.
                        store.notify(channel)
                    return QueueMessage(
                        queue=QueueName(name),
                        item_id=first.item_id,
                        receipt=first.receipt,
                        attempt=first.attempt,
                        delivered_at=from_us(first.at),
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
            driver(conn).execute(_ACK, {"receipt": receipt, "now": now_us()})

        # Not synced: an ack lost in a power failure only means a redelivery.
        await self.store.write(run, "ack", durable=False)

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Put the delivered item back at the tail, visible after ``delay`` seconds.

        A no-op for a receipt that is not in flight (acked, or lapsed and redelivered). When
        the id is already waiting again, that waiting copy stands for both.
        """
        receipt = message.receipt
        delay_us = max(int(delay * _SECOND), 0)
        # Claimed ahead by this provider, so waiting as far as anyone else can tell: that
        # copy stands for both, as a waiting one would.
        waiting = self._is_prefetched(QueueName(message.queue).value, message.item_id)

        def run(conn: Connection) -> bool:
            now = now_us()
            row = conn.execute(_TAKE_BACK, {"receipt": receipt, "now": now}).first()
            if row is None or waiting:
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

        stored = await self.store.read(run, "size")
        # Claimed ahead but not handed out: still waiting (unless lapsed, then stored counts it).
        now = now_us()
        return stored + sum(1 for item in self._prefetched.get(name, ()) if item.deadline > now)
