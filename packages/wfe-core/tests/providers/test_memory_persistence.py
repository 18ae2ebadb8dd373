from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryPersistence
from wfe_core.testing.conformance import PersistenceSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryPersistence(PersistenceSuite):
    __test__ = True

    @pytest.fixture
    async def persistence(self) -> AsyncIterator[MemoryPersistence]:
        async with MemoryPersistence() as provider:
            yield provider
