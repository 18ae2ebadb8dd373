"""The end-to-end scenarios on a host whose providers are resolved by settings to SQLite
(skipped when wfe-sqlite is not installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.errors import ProviderNotFoundError
from wfe_core.testing.scenarios import WorkflowScenarios
from wfe_host import WorkflowHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class TestSqliteScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(self, tmp_path: Path) -> AsyncIterator[WorkflowHost]:
        try:
            host = WorkflowHost.from_settings({"persistence": f"sqlite:///{tmp_path}/wfe.db"})
        except ProviderNotFoundError:
            pytest.skip("wfe-sqlite is not installed")
        async with host:
            yield host
