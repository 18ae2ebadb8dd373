"""The wfe_core conformance suites, run on a SQLite file (and on an in-memory database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance import LockSuite, PersistenceSuite, QueueSuite
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestSqlitePersistence(PersistenceSuite):
    __test__ = True

    @pytest.fixture
    async def persistence(self, db_url: str) -> AsyncIterator[SqlitePersistence]:
        async with SqlitePersistence(db_url) as provider:
            yield provider

    @pytest.fixture
    async def shared_lock(self, db_url: str) -> AsyncIterator[SqliteLock]:
        async with SqliteLock(db_url) as provider:
            yield provider


class TestSqliteQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self, db_url: str) -> AsyncIterator[SqliteQueue]:
        async with SqliteQueue(db_url) as provider:
            yield provider

    @pytest.fixture
    async def other_queue(self, db_url: str) -> AsyncIterator[SqliteQueue]:
        # Its own connections, no shared wake-ups: another process's view of the file.
        async with SqliteQueue(db_url, share_connections=False) as provider:
            yield provider


class TestSqliteLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self, db_url: str) -> AsyncIterator[SqliteLock]:
        async with SqliteLock(db_url) as provider:
            yield provider

    @pytest.fixture
    async def other_lock(self, db_url: str) -> AsyncIterator[SqliteLock]:
        async with SqliteLock(db_url, share_connections=False) as provider:
            yield provider


class TestInMemoryPersistence(PersistenceSuite):
    """``sqlite:///:memory:``: the same behaviour without a file."""

    __test__ = True

    @pytest.fixture
    async def persistence(self) -> AsyncIterator[SqlitePersistence]:
        async with SqlitePersistence("sqlite:///:memory:") as provider:
            yield provider

    @pytest.fixture
    async def shared_lock(self, persistence: SqlitePersistence) -> AsyncIterator[SqliteLock]:
        # The same in-memory database only through the same (shared) store.
        async with SqliteLock("sqlite:///:memory:") as provider:
            yield provider


class TestInMemoryQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self) -> AsyncIterator[SqliteQueue]:
        async with SqliteQueue("sqlite:///:memory:") as provider:
            yield provider

    @pytest.fixture
    async def other_queue(self, queue: SqliteQueue) -> AsyncIterator[SqliteQueue]:
        # An in-memory database lives in one process: the other view shares its connection.
        async with SqliteQueue("sqlite:///:memory:") as provider:
            yield provider


class TestInMemoryLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self) -> AsyncIterator[SqliteLock]:
        async with SqliteLock("sqlite:///:memory:") as provider:
            yield provider

    @pytest.fixture
    async def other_lock(self, lock: SqliteLock) -> AsyncIterator[SqliteLock]:
        async with SqliteLock("sqlite:///:memory:") as provider:
            yield provider
