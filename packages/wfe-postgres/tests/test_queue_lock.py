"""The queue and lock conformance suites on a real PostgreSQL server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance import LockSuite, QueueSuite
from wfe_postgres.lock import PostgresLock
from wfe_postgres.queue import PostgresQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestPostgresQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self, db_url: str) -> AsyncIterator[PostgresQueue]:
        async with PostgresQueue(db_url) as provider:
            yield provider

    @pytest.fixture
    async def other_queue(self, db_url: str) -> AsyncIterator[PostgresQueue]:
        # Its own pool and listener: another process's view of the database.
        async with PostgresQueue(db_url, share_connections=False) as provider:
            yield provider


class TestPostgresLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self, db_url: str) -> AsyncIterator[PostgresLock]:
        async with PostgresLock(db_url) as provider:
            yield provider

    @pytest.fixture
    async def other_lock(self, db_url: str) -> AsyncIterator[PostgresLock]:
        async with PostgresLock(db_url, share_connections=False) as provider:
            yield provider
