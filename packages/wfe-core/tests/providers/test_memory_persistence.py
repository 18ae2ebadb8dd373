from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryPersistence
from wfe_core.testing.conformance import PersistenceSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryPersistence(PersistenceSuite):
    """The whole suite, its machine against the reference model included, with the store's
    shortcuts on (the product default) and off."""

    __test__ = True

    @pytest.fixture(params=[True, False], ids=["fast", "plain"])
    async def persistence(self, request: pytest.FixtureRequest) -> AsyncIterator[MemoryPersistence]:
        async with MemoryPersistence(fast=request.param) as provider:
            assert provider.fast is request.param
            yield provider
