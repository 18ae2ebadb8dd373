"""The work queue contract: at-least-once delivery of ids with ack and requeue."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from enum import StrEnum

import attrs

from wfe_core.providers._base import Provider


class QueueName(StrEnum):
    """The queues the engine uses."""

    WORKFLOW = "workflow"  #: ids of workflow instances with work to do
    EVENT = "event"  #: ids of published events to deliver to subscriptions
    INDEX = "index"  #: ids of workflow instances to (re)index in the search provider


@attrs.frozen
class QueueMessage:
    """One delivery of ``item_id`` from ``queue``; hand it back to :meth:`QueueProvider.ack`.

    ``receipt`` identifies this delivery (a redelivered item gets a new receipt).
    ``attempt`` counts deliveries of this enqueued item, starting at 1.
    """

    queue: QueueName
    item_id: str
    receipt: str
    attempt: int = 1
    delivered_at: datetime | None = None


class QueueProvider(Provider):
    """Queues of ids, delivered to one consumer at a time.

    Guarantees every implementation must keep (checked by ``wfe_core.testing.QueueSuite``):

    * items of one queue are delivered in the order they were enqueued (FIFO);
    * an item is never handed to two consumers at once;
    * enqueuing an id that is already waiting (enqueued, not yet dequeued) in the same queue
      adds no second copy: the waiting one keeps its place and, when it was delayed (a
      requeue with a delay), becomes visible now, so new work never waits for an old delay;
      enqueuing an id that is being processed (dequeued, not acked) queues it again, so work
      that arrives during a pass is never lost;
    * an item leaves the queue only when acked; :meth:`requeue` puts it back (optionally after
      a delay); with the ``queue-redelivery`` capability an item not acked within
      ``visibility_timeout`` seconds is delivered again.
    """

    @abstractmethod
    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        """Add ``item_id`` to the tail of ``queue``, visible now, and wake a waiting consumer.

        When ``item_id`` is already waiting in ``queue`` no second copy is added: the waiting
        one keeps its place, and if it is delayed (requeued with a delay not yet over) it
        becomes visible now.
        """

    @abstractmethod
    async def dequeue(
        self, queue: QueueName, *, timeout: float = 0.0, visibility_timeout: float = 300.0
    ) -> QueueMessage | None:
        """Take the head of ``queue``, waiting up to ``timeout`` seconds for one to arrive.

        Returns ``None`` when the queue stayed empty. Providers with the ``dequeue-blocks``
        capability wait without polling; others may poll within ``timeout``.
        """

    @abstractmethod
    async def ack(self, message: QueueMessage) -> None:
        """Remove a delivered item for good (processing finished). Acking twice is a no-op."""

    @abstractmethod
    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Hand a delivered item back to the tail of its queue, visible after ``delay`` seconds."""

    async def size(self, queue: QueueName) -> int:
        """Number of items waiting (not in flight) in ``queue``; for monitoring and tests."""
        raise NotImplementedError
