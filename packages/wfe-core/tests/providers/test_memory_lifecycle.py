from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryLifecycle
from wfe_core.testing.conformance import LifecycleSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryLifecycle(LifecycleSuite):
    __test__ = True

    @pytest.fixture
    async def lifecycle(self) -> AsyncIterator[MemoryLifecycle]:
        async with MemoryLifecycle() as provider:
            yield provider
