"""In-memory work queue: FIFO queues of ids with ack, requeue and redelivery."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING

import anyio
import attrs
from anyio.lowlevel import checkpoint

from wfe_core.clock import SYSTEM_CLOCK
from wfe_core.providers import capabilities as cap
from wfe_core.providers._queue import QueueMessage, QueueName, QueueProvider

if TYPE_CHECKING:
    from wfe_core.clock import Clock

__all__ = ["MemoryQueue"]


@attrs.define
class _Waiting:
    #: When the item may be handed out, on the event loop's clock (later for a delayed requeue).
    visible_at: float
    #: Deliveries of this enqueued item so far.
    attempts: int = 0


@attrs.define
class _InFlight:
    item_id: str
    attempt: int
    #: When the delivery lapses and the item is handed out again (event loop clock).
    deadline: float


@attrs.define
class _Queue:
    # Insertion-ordered by id: the order is the FIFO order and the keys de-duplicate.
    waiting: OrderedDict[str, _Waiting] = attrs.field(factory=OrderedDict)
    in_flight: dict[str, _InFlight] = attrs.field(factory=dict)  # by receipt
    #: One event per sleeping dequeue, set when something may have become deliverable. Each
    #: waiter owns its event and removes it when it leaves, so no event outlives its event
    #: loop (a provider may serve several ``anyio.run`` calls one after another).
    waiters: set[anyio.Event] = attrs.field(factory=set)


class MemoryQueue(QueueProvider):
    """Queues of ids shared by the tasks of one event loop.

    :meth:`dequeue` waits without polling: it sleeps until an enqueue or requeue, or until the
    next delayed item becomes visible or an unacked delivery lapses. A delivery not acked within
    its ``visibility_timeout`` goes back to the tail of its queue and is delivered again with a
    new receipt and ``attempt + 1``; the lapsed receipt can no longer be acked or requeued.

    An id enqueued while it is in flight waits as a new item (attempts start over) and may be
    handed to another consumer before the first one acks: the engine's lock, not the queue,
    keeps two workers off one instance. ``clock`` gives the messages' ``delivered_at``; waits
    and timeouts are measured on the event loop's clock.
    """

    capabilities = frozenset({cap.DEQUEUE_BLOCKS, cap.QUEUE_REDELIVERY})

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._queues: dict[QueueName, _Queue] = {}

    def _queue(self, name: QueueName) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[QueueName(name)] = _Queue()
        return queue

    @staticmethod
    def _notify(queue: _Queue) -> None:
        for waiter in queue.waiters:
            waiter.set()
        queue.waiters.clear()

    @staticmethod
    def _reclaim(queue: _Queue, now: float) -> None:
        """Put deliveries whose visibility timeout lapsed back at the tail."""
        lapsed = [r for r, flight in queue.in_flight.items() if flight.deadline <= now]
        for receipt in sorted(lapsed, key=lambda r: queue.in_flight[r].deadline):
            flight = queue.in_flight.pop(receipt)
            # Already waiting again (re-enqueued during the pass): one waiting copy is enough.
            if flight.item_id not in queue.waiting:
                queue.waiting[flight.item_id] = _Waiting(now, flight.attempt)

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        """Add ``item_id`` at the tail of ``queue``. When it is already waiting, that copy
        stands for both: it keeps its place, and becomes visible now if it was delayed."""
        await checkpoint()
        state = self._queue(queue)
        now = anyio.current_time()
        waiting = state.waiting.get(item_id)
        if waiting is None:
            state.waiting[item_id] = _Waiting(now)
            self._notify(state)
        elif waiting.visible_at > now:
            # A delayed requeue (a busy retry) must not hold up work that arrived since.
            waiting.visible_at = now
            self._notify(state)

    async def dequeue(
        self,
        queue: QueueName,
        *,
        timeout: float = 0.0,
        visibility_timeout: float = 300.0,
    ) -> QueueMessage | None:
        """The first visible item of ``queue``, waiting up to ``timeout`` seconds for one."""
        await checkpoint()
        state = self._queue(queue)
        deadline = anyio.current_time() + max(timeout, 0.0)
        while True:
            now = anyio.current_time()
            self._reclaim(state, now)
            wake_at = deadline
            for item_id, waiting in state.waiting.items():
                if waiting.visible_at <= now:
                    del state.waiting[item_id]
                    receipt = uuid.uuid4().hex
                    attempt = waiting.attempts + 1
                    state.in_flight[receipt] = _InFlight(item_id, attempt, now + visibility_timeout)
                    return QueueMessage(
                        queue=QueueName(queue),
                        item_id=item_id,
                        receipt=receipt,
                        attempt=attempt,
                        delivered_at=self._clock.now(),
                    )
                wake_at = min(wake_at, waiting.visible_at)
            if now >= deadline:
                return None
            for flight in state.in_flight.values():
                wake_at = min(wake_at, flight.deadline)
            woken = anyio.Event()
            state.waiters.add(woken)
            try:
                with anyio.move_on_after(max(wake_at - now, 0.0)):
                    await woken.wait()
            finally:
                state.waiters.discard(woken)

    async def ack(self, message: QueueMessage) -> None:
        """Forget the delivery for good; a no-op for a receipt that is not in flight."""
        await checkpoint()
        self._queue(message.queue).in_flight.pop(message.receipt, None)

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Put the delivered item back at the tail, visible after ``delay`` seconds.

        A no-op for a receipt that is not in flight (acked, or lapsed and redelivered). When
        the id is already waiting again, that waiting copy stands for both.
        """
        await checkpoint()
        state = self._queue(message.queue)
        flight = state.in_flight.pop(message.receipt, None)
        if flight is None or flight.item_id in state.waiting:
            return
        visible_at = anyio.current_time() + max(delay, 0.0)
        state.waiting[flight.item_id] = _Waiting(visible_at, flight.attempt)
        self._notify(state)

    async def size(self, queue: QueueName) -> int:
        """Items waiting in ``queue`` (delayed ones included, deliveries in flight not)."""
        await checkpoint()
        state = self._queue(queue)
        self._reclaim(state, anyio.current_time())
        return len(state.waiting)
