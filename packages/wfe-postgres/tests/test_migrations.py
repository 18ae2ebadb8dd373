"""The schema's migrations: from an empty database, again on an up-to-date one, from two hosts
at once, and the check-only mode for deployments where the application may not run DDL."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from wfe_postgres import PostgresOptions, PostgresPersistence
from wfe_postgres.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    SchemaVersionError,
    apply_migrations,
    check_migrations,
)

pytestmark = pytest.mark.anyio


def _versions(postgres_url: str, schema: str) -> list[int]:
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(f"SELECT version FROM {schema}.schema_version ORDER BY version")
        return [r[0] for r in rows.fetchall()]


def test_the_migrations_are_numbered_in_order_from_one() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert versions[-1] == LATEST_VERSION


async def test_an_empty_database_is_migrated_on_open(db_url: str, postgres_url: str, schema: str):
    status = await check_migrations(db_url)
    assert (status.applied, status.up_to_date) == ((), False)
    # Checking created nothing, not even the schema.
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchone() is None
    async with PostgresPersistence(db_url):
        pass
    assert _versions(postgres_url, schema) == [m.version for m in MIGRATIONS]
    assert (await check_migrations(db_url)).up_to_date


async def test_migrating_an_up_to_date_schema_changes_nothing(
    db_url: str, postgres_url: str, schema: str
) -> None:
    first = await apply_migrations(db_url)
    assert first.pending == tuple(m.version for m in MIGRATIONS)
    with psycopg.connect(postgres_url) as conn:
        stamps = conn.execute(f"SELECT version, applied_at FROM {schema}.schema_version").fetchall()
    again = await apply_migrations(db_url)
    assert again.pending == ()
    assert again.applied == first.pending
    with psycopg.connect(postgres_url) as conn:
        after = conn.execute(f"SELECT version, applied_at FROM {schema}.schema_version").fetchall()
    assert after == stamps


async def test_hosts_migrating_at_once_migrate_once(db_url: str, postgres_url, schema) -> None:
    # Separate pools: the advisory lock, not the shared pool, keeps them apart.
    opened: list[PostgresPersistence] = []

    async def host() -> None:
        provider = PostgresPersistence(db_url, share_connections=False)
        await provider.open()
        opened.append(provider)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(host)
    for provider in opened:
        await provider.close()
    assert len(opened) == 4
    assert _versions(postgres_url, schema) == [m.version for m in MIGRATIONS]


async def test_check_only_refuses_an_out_of_date_schema_naming_what_to_run(db_url: str):
    options = PostgresOptions(migrate=False)
    with pytest.raises(SchemaVersionError, match=r"at version none \(empty\).*run `wfe migrate`"):
        async with PostgresPersistence(db_url, options):
            pass
    await apply_migrations(db_url)
    async with PostgresPersistence(db_url, options) as provider:
        status = await provider.check_schema()
        assert status.up_to_date


async def test_a_schema_newer_than_the_code_is_refused(
    db_url: str, postgres_url: str, schema: str
) -> None:
    await apply_migrations(db_url)
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            f"INSERT INTO {schema}.schema_version (version, description) VALUES (%s, 'future')",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(SchemaVersionError, match="newer than this wfe-postgres knows"):
        async with PostgresPersistence(db_url):
            pass


def test_wfe_migrate_checks_then_migrates_the_postgres_schema(db_url: str, schema: str) -> None:
    import json

    from click.testing import CliRunner

    wfe_host_cli = pytest.importorskip("wfe_host.cli", reason="wfe migrate is wfe-host's")
    env = {"WFE_PERSISTENCE": db_url, "WFE_LOCK": db_url, "WFE_QUEUE": db_url}
    runner = CliRunner()
    checked = runner.invoke(wfe_host_cli.main, ["migrate", "--check", "--json"], env=env)
    assert checked.exit_code == 3, checked.output
    (row,) = json.loads(checked.output.split("\nrun ")[0])
    assert row["where"].startswith(f"schema {schema} on postgresql://")
    assert (row["version"], row["latest"]) == (0, LATEST_VERSION)
    assert row["pending"][0] == "0001 persistence"
    migrated = runner.invoke(wfe_host_cli.main, ["migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    assert f"migrated from schema version 0 to {LATEST_VERSION}" in migrated.output
    again = runner.invoke(wfe_host_cli.main, ["migrate", "--check"], env=env)
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
