"""The test server fixture and the shared connection layer, on a real PostgreSQL."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from wfe_core.errors import ProviderError, ProviderUnavailableError
from wfe_postgres._database import acquire_database, release_database
from wfe_postgres.options import PostgresOptions, parse_url
from wfe_postgres.testing import PostgresServer

pytestmark = pytest.mark.anyio


def test_server_runs_postgres_18_without_sync_when_fast(postgres_server, postgres_url) -> None:
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None
        if postgres_server is not None:
            assert int(version[0]) >= 180000
            assert conn.execute("SHOW fsync").fetchone() == ("off",)


def test_a_server_started_without_fast_syncs_commits() -> None:
    # What the bench uses: a commit is on disk when it returns.
    with PostgresServer() as server, psycopg.connect(server.url) as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)


async def test_providers_of_one_process_share_one_pool(db_url: str) -> None:
    target = parse_url(db_url)
    first = await acquire_database(target)
    second = await acquire_database(parse_url(db_url))
    try:
        assert first is second
        assert first.refs == 2
        own = await acquire_database(target, shared=False)
        assert own is not first
        await release_database(own)
    finally:
        await release_database(second)
        await release_database(first)
    assert first.refs == 0


async def test_connections_use_the_schema_and_the_options(db_url: str, schema: str) -> None:
    target = parse_url(db_url, PostgresOptions(statement_timeout=2.5, application_name="w-1"))
    database = await acquire_database(target)
    try:

        async def settings(conn):
            cursor = await conn.execute(
                "SELECT current_schema(), current_setting('statement_timeout'),"
                " current_setting('application_name'), current_setting('TimeZone')"
            )
            return await cursor.fetchone()

        assert await database.run(settings, "read settings") == (schema, "2500ms", "w-1", "UTC")
    finally:
        await release_database(database)


async def test_a_driver_error_is_wrapped_and_names_the_operation(db_url: str) -> None:
    database = await acquire_database(parse_url(db_url))
    try:

        async def broken(conn):
            await conn.execute("SELECT * FROM no_such_table")

        with pytest.raises(ProviderError, match="PostgreSQL broken read failed") as caught:
            await database.run(broken, "broken read")
        assert not isinstance(caught.value, ProviderUnavailableError)
        assert isinstance(caught.value.__cause__, psycopg.Error)
    finally:
        await release_database(database)


async def test_an_unreachable_server_is_unavailable_within_connect_timeout() -> None:
    from wfe_core.testing.conformance.servers import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    target = parse_url(url, PostgresOptions(connect_timeout=1.0))
    with anyio.fail_after(30), pytest.raises(ProviderUnavailableError, match="cannot connect"):
        await acquire_database(target)


async def test_work_survives_a_server_restart() -> None:
    # A server of its own: restarting the session's would disturb the other tests.
    with PostgresServer(fast=True) as server:
        database = await acquire_database(parse_url(server.url))
        try:

            async def pid(conn):
                cursor = await conn.execute("SELECT pg_backend_pid()")
                row = await cursor.fetchone()
                return row[0]

            before = await database.run(pid, "read pid")
            await anyio.to_thread.run_sync(server.restart)
            # The pooled connection died with the server: the pool replaces it.
            after = await database.run(pid, "read pid")
            assert after != before
        finally:
            await release_database(database)


async def test_retries_run_out_into_unavailable_while_the_server_is_down() -> None:
    with PostgresServer(fast=True) as server:
        options = PostgresOptions(connect_timeout=0.5, retry_timeout=1.0)
        database = await acquire_database(parse_url(server.url, options))
        try:
            server.stop()

            async def one(conn):
                await conn.execute("SELECT 1")

            with anyio.fail_after(30), pytest.raises(ProviderUnavailableError):
                await database.run(one, "select")
            server.start()
            # The same database recovers once the server is back. Not necessarily within one
            # call's 1 s budget: the pool backs off between its reconnection attempts, which on
            # a loaded machine can outlast it (the caller then gets the same clear error).
            with anyio.fail_after(30):
                while True:
                    try:
                        await database.run(one, "select")
                        break
                    except ProviderUnavailableError:
                        await anyio.sleep(0.2)
        finally:
            await release_database(database)
