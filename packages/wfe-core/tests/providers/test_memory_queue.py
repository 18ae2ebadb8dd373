from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryQueue
from wfe_core.providers import QueueMessage, QueueName, QueueProvider
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance import QueueSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self) -> AsyncIterator[MemoryQueue]:
        async with MemoryQueue() as provider:
            yield provider


class SharedQueueView(QueueProvider):
    """A second provider object over one MemoryQueue, standing in for another process's
    connection to a shared backend, so the suite's ``distributed`` tests run here too."""

    capabilities = MemoryQueue.capabilities | {cap.DISTRIBUTED}

    def __init__(self, shared: MemoryQueue) -> None:
        self.shared = shared

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        await self.shared.enqueue(queue, item_id)

    async def dequeue(
        self,
        queue: QueueName,
        *,
        timeout: float = 0.0,
        visibility_timeout: float = 300.0,
    ) -> QueueMessage | None:
        return await self.shared.dequeue(
            queue, timeout=timeout, visibility_timeout=visibility_timeout
        )

    async def ack(self, message: QueueMessage) -> None:
        await self.shared.ack(message)

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        await self.shared.requeue(message, delay=delay)

    async def size(self, queue: QueueName) -> int:
        return await self.shared.size(queue)


class TestSharedMemoryQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def shared(self) -> AsyncIterator[MemoryQueue]:
        async with MemoryQueue() as provider:
            yield provider

    @pytest.fixture
    async def queue(self, shared: MemoryQueue) -> AsyncIterator[SharedQueueView]:
        async with SharedQueueView(shared) as provider:
            yield provider

    @pytest.fixture
    async def other_queue(self, shared: MemoryQueue) -> AsyncIterator[SharedQueueView]:
        async with SharedQueueView(shared) as provider:
            yield provider
