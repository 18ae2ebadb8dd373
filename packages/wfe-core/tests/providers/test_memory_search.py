from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemorySearch
from wfe_core.testing.conformance import SearchSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemorySearch(SearchSuite):
    __test__ = True

    @pytest.fixture
    async def search(self) -> AsyncIterator[MemorySearch]:
        async with MemorySearch() as provider:
            yield provider
