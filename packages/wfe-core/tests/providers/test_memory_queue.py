from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryQueue
from wfe_core.testing import QueueSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self) -> AsyncIterator[MemoryQueue]:
        async with MemoryQueue() as provider:
            yield provider
