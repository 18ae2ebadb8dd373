"""The queue and lock conformance suites on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from wfe_core.testing import LockSuite, QueueSuite
from wfe_postgres.lock import PostgresLock
from wfe_postgres.queue import PostgresQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

MIGRATION = Path(__file__).parents[1] / "src/wfe_postgres/migrations/0002_queue_lock.sql"


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"SET search_path = {name}")
        conn.execute(MIGRATION.read_text())
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


class TestPostgresQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self, postgres_url: str, schema: str) -> AsyncIterator[PostgresQueue]:
        async with PostgresQueue(postgres_url, schema=schema) as provider:
            yield provider

    @pytest.fixture
    async def other_queue(self, postgres_url: str, schema: str) -> AsyncIterator[PostgresQueue]:
        async with PostgresQueue(postgres_url, schema=schema) as provider:
            yield provider


class TestPostgresLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self, postgres_url: str, schema: str) -> AsyncIterator[PostgresLock]:
        async with PostgresLock(postgres_url, schema=schema) as provider:
            yield provider

    @pytest.fixture
    async def other_lock(self, postgres_url: str, schema: str) -> AsyncIterator[PostgresLock]:
        async with PostgresLock(postgres_url, schema=schema) as provider:
            yield provider
