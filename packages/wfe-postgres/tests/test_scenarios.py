"""The end-to-end workflow scenarios of wfe_core.testing on a host whose persistence is
PostgreSQL (the queue and lock are the in-memory ones until wfe-postgres has its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryLock, MemoryQueue
from wfe_core.testing.scenarios import WorkflowScenarios
from wfe_postgres import PostgresPersistence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

wfe_host = pytest.importorskip("wfe_host", reason="the scenarios need wfe-host")


class TestPostgresScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(self, db_url: str) -> AsyncIterator[object]:
        # Built directly (not through settings), so the persistence is surely this one.
        host = wfe_host.WorkflowHost(PostgresPersistence(db_url), MemoryLock(), MemoryQueue())
        async with host:
            yield host
