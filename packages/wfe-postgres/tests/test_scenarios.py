"""The end-to-end workflow scenarios of wfe_core.testing on a host whose persistence, queue
and lock are this package's, on one PostgreSQL database (a schema per test)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance.scenarios import WorkflowScenarios
from wfe_postgres import PostgresLock, PostgresPersistence, PostgresQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

wfe_host = pytest.importorskip("wfe_host", reason="the scenarios need wfe-host")


class TestPostgresScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(self, db_url: str) -> AsyncIterator[object]:
        # Built directly (not through settings), so the providers are surely these.
        host = wfe_host.WorkflowHost(
            PostgresPersistence(db_url), PostgresLock(db_url), PostgresQueue(db_url)
        )
        async with host:
            yield host
