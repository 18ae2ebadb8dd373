"""The end-to-end workflow scenarios of wfe_core.testing on a host whose persistence, queue
and lock are this package's, on one SQLite file (skipped without wfe-host)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance.scenarios import WorkflowScenarios
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

wfe_host = pytest.importorskip("wfe_host", reason="the scenarios need wfe-host")


class TestSqliteScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(self, tmp_path: Path) -> AsyncIterator[object]:
        url = f"sqlite:///{tmp_path}/wfe.db"
        # Built directly (not through settings), so the providers are surely these.
        host = wfe_host.WorkflowHost(SqlitePersistence(url), SqliteLock(url), SqliteQueue(url))
        async with host:
            yield host
