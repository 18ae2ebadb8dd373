"""Consuming a queue: hand each item to a handler, at most as many at a time as there are
slots."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from wfe_core.providers import QueueMessage, QueueName, QueueProvider

logger = logging.getLogger("wfe_host.consumer")

#: Handles one item; returns ``None`` when it is done (ack) or a delay in seconds after
#: which the item is handed out again (requeue).
Handler = Callable[[str], Awaitable[float | None]]

#: How long one ``dequeue`` waits; blocking queues sleep the whole time (no polling).
DEQUEUE_WAIT = 30.0
#: Pause after the queue itself failed, so a broken backend is not hammered.
BACKEND_PAUSE = 1.0
#: Longest wait before an item handed back (busy, failed) is handed out again.
MAX_BACKOFF = 5.0


async def consume(
    queue: QueueProvider,
    name: QueueName,
    handler: Handler,
    *,
    slots: anyio.Semaphore,
    visibility_timeout: float,
    intake: anyio.CancelScope | None = None,
) -> None:
    """Run until cancelled: take a slot, dequeue an item of ``name`` and handle it, the slot
    held until it is acked. ``slots`` may be shared with other work that counts against the
    same limit (the passes a host starts without the queue).

    Cancelling ``intake`` stops taking items and returns once the items taken are handled
    (a graceful stop); cancelling the task running this cancels those too."""
    async with anyio.create_task_group() as tg:
        with intake or anyio.CancelScope():
            await _take(queue, name, handler, tg, slots, visibility_timeout)


async def _take(
    queue: QueueProvider,
    name: QueueName,
    handler: Handler,
    tg: TaskGroup,
    slots: anyio.Semaphore,
    visibility_timeout: float,
) -> None:
    while True:
        await slots.acquire()
        try:
            message = await queue.dequeue(
                name, timeout=DEQUEUE_WAIT, visibility_timeout=visibility_timeout
            )
        except Exception:
            # A provider should only raise WfeError, but a worker must outlive a bug in one.
            slots.release()
            logger.exception("dequeue from %s failed", name)
            await anyio.sleep(BACKEND_PAUSE)
            continue
        except BaseException:
            slots.release()
            raise
        if message is None:
            slots.release()
            continue
        tg.start_soon(_handle, queue, message, handler, slots)


async def _handle(
    queue: QueueProvider, message: QueueMessage, handler: Handler, slots: anyio.Semaphore
) -> None:
    try:
        try:
            delay = await handler(message.item_id)
        except Exception:
            logger.exception(
                "handling %s %s failed; it will be retried",
                message.queue,
                message.item_id,
                extra={"item_id": message.item_id},
            )
            delay = BACKEND_PAUSE
        with anyio.CancelScope(shield=True):
            if delay is None:
                await queue.ack(message)
            else:
                # Back off while the item keeps coming back (another worker's long pass holds
                # the instance), so waiting for it costs little.
                backoff = min(delay * 2 ** max(message.attempt - 1, 0), MAX_BACKOFF)
                await queue.requeue(message, delay=max(delay, backoff))
    except Exception:
        logger.exception("acking %s %s failed", message.queue, message.item_id)
    finally:
        slots.release()
