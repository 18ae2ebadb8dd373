from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryLock
from wfe_core.testing import LockSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self) -> AsyncIterator[MemoryLock]:
        async with MemoryLock() as provider:
            yield provider
