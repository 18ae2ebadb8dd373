"""The end-to-end workflow scenarios of wfe_core.testing on a host whose lock, queue and
lifecycle publisher are Valkey's, with instances in SQLite and in PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance.scenarios import WorkflowScenarios
from wfe_host import WorkflowHost
from wfe_postgres import PostgresPersistence
from wfe_sqlite import SqlitePersistence
from wfe_valkey.lifecycle import ValkeyLifecycle
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.queue import ValkeyQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from wfe_valkey.options import ValkeyOptions


class TestValkeyOverSqliteScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(
        self, tmp_path: Path, valkey_url: str, options: ValkeyOptions
    ) -> AsyncIterator[WorkflowHost]:
        host = WorkflowHost(
            SqlitePersistence(f"sqlite:///{tmp_path}/wfe.db"),
            ValkeyLock(valkey_url, options),
            ValkeyQueue(valkey_url, options),
            lifecycle=ValkeyLifecycle(valkey_url, options),
        )
        async with host:
            yield host


class TestValkeyOverPostgresScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(
        self, pg_url: str, valkey_url: str, options: ValkeyOptions
    ) -> AsyncIterator[WorkflowHost]:
        host = WorkflowHost(
            PostgresPersistence(pg_url),
            ValkeyLock(valkey_url, options),
            ValkeyQueue(valkey_url, options),
            lifecycle=ValkeyLifecycle(valkey_url, options),
        )
        async with host:
            yield host
