"""Valkey queue: FIFO queues of ids with de-duplication, leases (receipts) and redelivery."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import anyio

from wfe_core.errors import ProviderError
from wfe_core.providers import QueueMessage, QueueName, QueueProvider
from wfe_core.providers import capabilities as cap
from wfe_valkey import _queue_scripts as scripts
from wfe_valkey._connection import Connection
from wfe_valkey.options import ValkeyOptions, parse_url

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from valkey.commands.core import AsyncScript

__all__ = ["ValkeyQueue"]

logger = logging.getLogger(__name__)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 0)


class ValkeyQueue(QueueProvider):
    """Queues of ids on a Valkey (or Redis) server, shared by every process using it.

    Each operation is one Lua script over sorted sets and hashes (see
    ``wfe_valkey._queue_scripts``), so concurrent consumers on many machines never see a
    half-done change. A delivery stays recorded under its receipt until acked; one not acked
    within its ``visibility_timeout`` goes back to the tail and is delivered again with a new
    receipt and ``attempt + 1``, and the lapsed receipt can no longer ack or requeue.

    :meth:`dequeue` waits without polling: a consumer with nothing to take blocks on the
    queue's wake list (``BLPOP``, on a connection of its own) that every enqueue and requeue
    pushes to, for at most the time until a delayed item is due or ``max_block`` seconds,
    after which it looks again (that is how it finds a delivery that lapsed because its
    consumer died).

    Not ``durable``: what the queue holds lives in the server's memory; a server without
    persistence loses it on a restart. The host's recovery sweep queues again the work still
    recorded in persistence.
    """

    capabilities = frozenset(
        {cap.DISTRIBUTED, cap.QUEUE_REDELIVERY, cap.DEQUEUE_BLOCKS, cap.ASYNCIO_ONLY}
    )

    def __init__(self, url: str | None = None, options: ValkeyOptions | None = None) -> None:
        self.target = parse_url(url, options)
        self._connection: Connection | None = None
        self._scripts: dict[str, AsyncScript] = {}

    async def open(self) -> None:
        """Connect, and check the server answers."""
        if self._connection is not None:
            return
        connection = Connection(self.target)
        try:
            await connection.check()
        except BaseException:
            await connection.close()
            raise
        client = connection.client
        self._scripts = {
            "enqueue": client.register_script(scripts.ENQUEUE),
            "dequeue": client.register_script(scripts.DEQUEUE),
            "ack": client.register_script(scripts.ACK),
            "requeue": client.register_script(scripts.REQUEUE),
            "size": client.register_script(scripts.SIZE),
        }
        self._connection = connection

    async def close(self) -> None:
        """Close the connections."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.close()

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise ProviderError("the valkey queue is not open (use `async with` or open())")
        return self._connection

    def keys(self, queue: QueueName) -> list[str]:
        """The keys of ``queue``, all under one hash tag (one cluster slot)."""
        tag = f"{{{self.target.options.key_prefix}:{QueueName(queue).value}}}"
        return [f"{tag}:{name}" for name in scripts.KEY_NAMES]

    async def _script(self, name: str, queue: QueueName, *args: Any) -> Any:
        script = self._scripts[name]
        keys = self.keys(queue)
        connection = self.connection
        return await connection.run(f"{name} on queue {queue}", lambda: script(keys, list(args)))

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        """Add ``item_id`` at the tail of ``queue`` (a waiting copy keeps its place and
        becomes visible now) and wake a waiting consumer."""
        await self._script("enqueue", queue, item_id)

    async def dequeue(
        self, queue: QueueName, *, timeout: float = 0.0, visibility_timeout: float = 300.0
    ) -> QueueMessage | None:
        """The first visible item of ``queue``, waiting up to ``timeout`` seconds for one."""
        deadline = anyio.current_time() + max(timeout, 0.0)
        wake_key = self.keys(queue)[-1]
        max_block = self.target.options.max_block
        while True:
            receipt = uuid.uuid4().hex
            reply = await self._script("dequeue", queue, receipt, _ms(visibility_timeout))
            if int(reply[0]) == 1:
                item_id = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
                return QueueMessage(
                    queue=QueueName(queue),
                    item_id=item_id,
                    receipt=receipt,
                    attempt=int(reply[2]),
                    delivered_at=datetime.fromtimestamp(int(reply[3]) / 1000, UTC),
                )
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return None
            wait = min(remaining, max_block)
            due_in_ms = int(reply[1])
            if due_in_ms >= 0:
                wait = min(wait, due_in_ms / 1000)
            if wait > 0:
                await self._wait_for_wake(wake_key, wait)

    async def _wait_for_wake(self, wake_key: str, seconds: float) -> None:
        # BLPOP takes whole milliseconds; 0 would mean "for ever".
        blocking = self.connection.blocking
        timeout = max(round(seconds, 3), 0.001)

        async def blpop() -> Any:
            # The server takes fractional seconds; the client's annotation says int.
            return await cast("Awaitable[Any]", blocking.blpop([wake_key], timeout))  # type: ignore[arg-type]

        await self.connection.run("waiting for work", blpop)

    async def ack(self, message: QueueMessage) -> None:
        """Forget the delivery for good; a no-op for a receipt that is not in flight."""
        await self._script("ack", message.queue, message.receipt)

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        """Put the delivered item back at the tail, visible after ``delay`` seconds (a no-op
        for a receipt no longer in flight, or when the id is waiting again already)."""
        await self._script("requeue", message.queue, message.receipt, _ms(delay))

    async def size(self, queue: QueueName) -> int:
        """Items waiting in ``queue`` (delayed ones included, deliveries in flight not)."""
        return int(await self._script("size", queue))
