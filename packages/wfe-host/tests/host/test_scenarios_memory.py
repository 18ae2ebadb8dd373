"""The end-to-end scenarios on a host with the in-memory providers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.scenarios import WorkflowScenarios
from wfe_host import WorkflowHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(self) -> AsyncIterator[WorkflowHost]:
        async with WorkflowHost() as host:
            yield host
