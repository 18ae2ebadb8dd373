"""PostgreSQL work queue: FIFO queues of ids shared by every process on the database.

A dequeue is one statement (``UPDATE ... WHERE seq = (SELECT ... FOR UPDATE SKIP LOCKED
LIMIT 1) RETURNING``), so consumers never block each other and never get the same row.
Every deadline (visibility, delays) is the database's ``now()``, so the hosts' clocks do not
matter. Waiting consumers sleep on ``LISTEN`` (one connection per process, see
:mod:`wfe_postgres._listener`); the enqueue sends ``NOTIFY`` in its own transaction.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Final

import anyio
from psycopg import sql

from wfe_core.providers import QueueMessage, QueueName, QueueProvider
from wfe_core.providers import capabilities as cap
from wfe_postgres._batch import batcher_of
from wfe_postgres._database import rendered
from wfe_postgres._listener import ListeningProviderMixin, notify_sql

if TYPE_CHECKING:
    from datetime import datetime

    from wfe_postgres.options import PostgresOptions

__all__ = ["PostgresQueue", "queue_topic"]

logger = logging.getLogger("wfe_postgres.queue")

#: The pause before looking again when another consumer held the visible head row for the
#: instant of our look (SKIP LOCKED passed it by, yet it is due).
_CONTENDED_PAUSE: Final = 0.01


def queue_topic(queue: QueueName | str) -> str:
    """The notification payload that wakes the consumers of ``queue``."""
    return f"q:{QueueName(queue).value}"


def _statements(schema: str) -> dict[str, sql.Composed]:
    # Unqualified: every connection has the schema as its search_path.
    table = sql.Identifier("wfe_queue")
    notify = notify_sql(schema)
    return {
        # The waiting copy of an id stands for every enqueue of it: it keeps its place and,
        # when delayed, becomes visible now. NOTIFY in the same transaction: a consumer woken
        # by it always finds the row committed.
        "enqueue": sql.SQL(
            "WITH added AS ("
            " INSERT INTO {q} AS q (queue, item_id, visible_at, attempt, enqueued_at)"
            " VALUES (%(queue)s, %(item_id)s, now(), 0, now())"
            " ON CONFLICT (queue, item_id) WHERE receipt IS NULL"
            " DO UPDATE SET visible_at = excluded.visible_at"
            " WHERE q.visible_at > excluded.visible_at"
            " RETURNING 1)"
            " SELECT {notify}"
        ).format(q=table, notify=notify),
        # The claim: one statement. A lapsed delivery (in flight past its deadline) is taken
        # first, in place (it is the oldest work); else the head of the waiting items. SKIP
        # LOCKED: a row another consumer is claiming right now is passed by, never waited
        # for. The CTEs run lazily: the waiting items are not read when a lapsed delivery
        # was found.
        # When nothing was claimed the same round trip says when something is next due (a
        # delayed item, or a delivery that lapses), in seconds from the database's now.
        "claim": sql.SQL(
            "WITH lapsed AS ("
            " SELECT seq FROM {q} WHERE queue = %(queue)s AND receipt IS NOT NULL"
            " AND visible_at <= now() ORDER BY visible_at LIMIT 1 FOR UPDATE SKIP LOCKED),"
            " head AS ("
            " SELECT seq FROM {q} WHERE queue = %(queue)s AND receipt IS NULL"
            " AND visible_at <= now() ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED),"
            " picked AS (SELECT seq FROM lapsed UNION ALL SELECT seq FROM head LIMIT 1),"
            " claimed AS ("
            " UPDATE {q} AS q SET receipt = gen_random_uuid()::text, attempt = q.attempt + 1,"
            " delivered_at = now(), visible_at = now() + make_interval(secs => %(visibility)s)"
            " FROM picked WHERE q.seq = picked.seq"
            " RETURNING q.item_id, q.receipt, q.attempt, q.delivered_at)"
            " SELECT item_id, receipt, attempt, delivered_at, NULL::float8 FROM claimed"
            " UNION ALL"
            " SELECT NULL, NULL, NULL, NULL, extract(epoch FROM least("
            "  (SELECT min(visible_at) FROM {q} WHERE queue = %(queue)s AND receipt IS NULL),"
            "  (SELECT min(visible_at) FROM {q} WHERE queue = %(queue)s"
            "   AND receipt IS NOT NULL)) - now())::float8"
            " WHERE NOT EXISTS (SELECT 1 FROM claimed)"
        ).format(q=table),
        # A delivery counts only until its deadline: a stale consumer's receipt does nothing.
        "ack": sql.SQL("DELETE FROM {q} WHERE receipt = %(receipt)s AND visible_at > now()").format(
            q=table
        ),
        # Back to the tail (a new seq), visible after the delay, keeping its attempt count;
        # when the id is waiting again already, that copy stands for both.
        "requeue": sql.SQL(
            "WITH taken AS ("
            " DELETE FROM {q} WHERE receipt = %(receipt)s AND visible_at > now()"
            " RETURNING queue, item_id, attempt, enqueued_at),"
            " back AS ("
            " INSERT INTO {q} (queue, item_id, visible_at, attempt, enqueued_at)"
            " SELECT queue, item_id, now() + make_interval(secs => %(delay)s), attempt,"
            "  enqueued_at FROM taken"
            " ON CONFLICT (queue, item_id) WHERE receipt IS NULL DO NOTHING"
            " RETURNING 1)"
            " SELECT {notify} FROM back"
        ).format(q=table, notify=notify),
        # Waiting ids; a lapsed delivery is waiting again, an id counted once.
        "size": sql.SQL(
            "SELECT count(DISTINCT item_id) FROM {q}"
            " WHERE queue = %(queue)s AND (receipt IS NULL OR visible_at <= now())"
        ).format(q=table),
    }


class PostgresQueue(ListeningProviderMixin, QueueProvider):
    """Queues of ids in a PostgreSQL table, shared by every process using the database.

    * FIFO per queue; an enqueue of an id already waiting adds no copy (a delayed one becomes
      visible now); an id enqueued while in flight waits as a new item.
    * A delivery not acked within ``visibility_timeout`` seconds (database clock) is handed
      out again with ``attempt + 1`` and a new receipt; the old receipt acks nothing.
    * :meth:`dequeue` sleeps on the process's ``LISTEN`` connection and wakes on the
      ``NOTIFY`` an enqueue sends; a jittered poll every ``poll_interval`` seconds, doubling
      to ``max_poll_interval`` (options), is the floor in case a notification is lost. When
      the listening connection drops, waiters look at once and poll at the first pace until
      it is back.
    """

    capabilities = frozenset(
        {cap.DURABLE, cap.DISTRIBUTED, cap.QUEUE_REDELIVERY, cap.DEQUEUE_BLOCKS, cap.ASYNCIO_ONLY}
    )

    def __init__(
        self,
        url: str | None,
        options: PostgresOptions | None = None,
        *,
        share_connections: bool = True,
    ) -> None:
        super().__init__(url, options, share_connections=share_connections)
        self._sql = rendered(_statements(self.target.options.schema))
        #: Per queue, the poll pause an idle consumer had reached: a consumer calls dequeue
        #: again and again (the host's every 30 s), and the back-off carries over instead of
        #: starting again at ``poll_interval`` each time.
        self._pace: dict[str, float] = {}

    async def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        # One statement each: alone in autocommit, or sent with the other short statements
        # of this process made at the same time, in one transaction (one round trip, one
        # commit; a NOTIFY goes out with the commit either way).
        return await batcher_of(self.database).run(self._sql[name], params, name)

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        """Add ``item_id`` at the tail of ``queue`` and wake a waiting consumer."""
        name = QueueName(queue).value
        await self._rows("enqueue", {"queue": name, "item_id": item_id, "topic": queue_topic(name)})

    async def dequeue(
        self,
        queue: QueueName,
        *,
        timeout: float = 0.0,
        visibility_timeout: float = 300.0,
    ) -> QueueMessage | None:
        """The first visible item of ``queue``, waiting up to ``timeout`` seconds for one."""
        name = QueueName(queue).value
        params = {"queue": name, "visibility": max(float(visibility_timeout), 0.0)}
        if timeout <= 0:
            message, _ = await self._claim(name, params)
            return message
        listener = self.listener
        deadline = anyio.current_time() + timeout
        options = self.target.options
        interval = self._pace.get(name, options.poll_interval)
        contended = False
        with listener.watch(queue_topic(name)) as watch:
            while True:
                # Armed before the look: an enqueue committed during it still wakes us.
                watch.rearm()
                message, until_due = await self._claim(name, params)
                if message is not None:
                    self._pace.pop(name, None)
                    return message
                self._pace[name] = interval
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return None
                if until_due is not None and until_due <= 0:
                    # Due, yet passed by: another consumer was claiming it. Look again.
                    if contended:
                        await anyio.sleep(min(_CONTENDED_PAUSE, remaining))
                    contended = True
                    continue
                contended = False
                pause = min(_jitter(interval), remaining)
                if until_due is not None:
                    pause = min(pause, until_due)
                if await watch.wait(pause):
                    interval = options.poll_interval
                elif watch.listening:
                    interval = min(interval * 2, options.max_poll_interval)
                else:
                    # No notifications until the listener is back: poll at the first pace.
                    interval = options.poll_interval

    async def _claim(
        self, name: str, params: dict[str, Any]
    ) -> tuple[QueueMessage | None, float | None]:
        rows = await self._rows("claim", params)
        if not rows:
            return None, None
        item_id, receipt, attempt, delivered_at, until_due = rows[0]
        if item_id is None:
            return None, until_due
        return _message(name, item_id, receipt, attempt, delivered_at), None

    async def ack(self, message: QueueMessage) -> None:
        """Forget the delivery for good; a no-op for a receipt that is not in flight."""
        await self._rows("ack", {"receipt": message.receipt})

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Put the delivered item back at the tail, visible after ``delay`` seconds.

        A no-op for a receipt that is not in flight (acked, or lapsed).
        """
        params = {
            "receipt": message.receipt,
            "delay": max(float(delay), 0.0),
            "topic": queue_topic(message.queue),
        }
        await self._rows("requeue", params)

    async def size(self, queue: QueueName) -> int:
        """Items waiting in ``queue`` (delayed ones included, deliveries in flight not)."""
        rows = await self._rows("size", {"queue": QueueName(queue).value})
        return int(rows[0][0])


def _message(
    name: str, item_id: str, receipt: str, attempt: int, delivered_at: datetime
) -> QueueMessage:
    return QueueMessage(
        queue=QueueName(name),
        item_id=item_id,
        receipt=receipt,
        attempt=int(attempt),
        delivered_at=delivered_at,
    )


def _jitter(seconds: float) -> float:
    # Spread the polls of many idle consumers instead of lining them up.
    return seconds * random.uniform(0.8, 1.2)
