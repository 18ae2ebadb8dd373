"""The wfe_core persistence suite (contract tests and the state machine against the memory
model) on a real PostgreSQL server, each test in a schema of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance import PersistenceSuite
from wfe_postgres import PostgresLock, PostgresPersistence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestPostgresPersistence(PersistenceSuite):
    __test__ = True

    @pytest.fixture
    async def persistence(self, db_url: str) -> AsyncIterator[PostgresPersistence]:
        async with PostgresPersistence(db_url) as provider:
            yield provider

    @pytest.fixture
    async def shared_lock(self, db_url: str) -> AsyncIterator[PostgresLock]:
        async with PostgresLock(db_url) as provider:
            yield provider
