"""The schema of the PostgreSQL providers, as numbered SQL migrations.

Each migration is a file ``NNNN_description.sql`` of this package, applied in order, each
once, inside one transaction that first takes a transaction-level advisory lock
(``pg_advisory_xact_lock``) keyed by the schema's name: hosts starting together wait for the
first, then find the schema up to date, so it is migrated once. Applied versions are recorded
in the schema's ``schema_version`` table. A shipped migration is never edited; changes go in a
new file with the next number.

For deployments where the application may not run DDL, set the option ``migrate=False``: the
providers then only check the schema at start and refuse to start on one that is not up to
date, with a :class:`SchemaVersionError` naming what to run. :func:`apply_migrations` and
:func:`check_migrations` do the same from a script (``wfe migrate [--check]``).
"""

from __future__ import annotations

import logging
import re
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.errors import ConfigurationError

if TYPE_CHECKING:
    from wfe_core.providers import SchemaStatus
    from wfe_postgres._database import Connection, Database
    from wfe_postgres.options import PostgresOptions

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "SchemaVersionError",
    "SchemaVersions",
    "apply_migrations",
    "check_migrations",
    "check_schema",
    "migrate",
]

logger = logging.getLogger(__name__)

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class SchemaVersionError(ConfigurationError):
    """The database schema is not the one this version of wfe-postgres needs."""


@attrs.frozen
class Migration:
    """One numbered SQL file."""

    version: int
    description: str
    sql: str = attrs.field(repr=False)


def _load() -> tuple[Migration, ...]:
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2].replace("_", " "), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):  # pragma: no cover - a packaging mistake
        raise RuntimeError(f"wfe_postgres.migrations: duplicate versions in {versions}")
    return tuple(found)


#: Every migration shipped, in order.
MIGRATIONS: tuple[Migration, ...] = _load()
#: The schema version this code needs (the last migration's).
LATEST_VERSION: int = MIGRATIONS[-1].version if MIGRATIONS else 0


@attrs.frozen
class SchemaVersions:
    """What :func:`check_migrations` / :func:`apply_migrations` found."""

    schema: str
    #: Versions recorded in ``schema_version`` (before applying, for ``apply``).
    applied: tuple[int, ...]
    #: Versions this code has that the database lacks (applied now, for ``apply``).
    pending: tuple[int, ...]

    @property
    def up_to_date(self) -> bool:
        return not self.pending

    def status(self, where: str) -> SchemaStatus:
        """As :class:`wfe_core.providers.SchemaStatus` (``wfe migrate``'s report)."""
        from wfe_core.providers import SchemaStatus

        known = {m.version: m.description for m in MIGRATIONS}
        return SchemaStatus(
            where=where,
            current=max(self.applied, default=0),
            latest=LATEST_VERSION,
            pending=tuple(f"{v:04d} {known.get(v, '?')}" for v in self.pending),
        )


_CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version integer PRIMARY KEY,"
    " description text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


async def _lock(conn: Connection, schema: str) -> None:
    # Keyed by the schema: deployments in other schemas of the database do not wait.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"wfe-migrate:{schema}",)
    )


async def _applied(conn: Connection, schema: str) -> tuple[int, ...] | None:
    """Versions in ``schema.schema_version``; ``None`` when the table does not exist."""
    cursor = await conn.execute(
        "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL", (schema,)
    )
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return None
    cursor = await conn.execute("SELECT version FROM schema_version ORDER BY version")
    return tuple(r[0] for r in await cursor.fetchall())


def _too_new(schema: str, applied: tuple[int, ...], where: str) -> SchemaVersionError | None:
    newer = [v for v in applied if v > LATEST_VERSION]
    if not newer:
        return None
    return SchemaVersionError(
        f"PostgreSQL schema {schema!r} on {where} is at version {max(newer)}, newer than this"
        f" wfe-postgres knows ({LATEST_VERSION}): upgrade wfe-postgres"
    )


async def migrate(database: Database) -> SchemaVersions:
    """Apply the pending migrations to the database's schema, under the advisory lock, in one
    transaction (all or none). Returns what was pending. Safe to run from many hosts at once."""
    schema = database.schema

    async def run(conn: Connection) -> SchemaVersions:
        from psycopg import sql

        await _lock(conn, schema)
        applied = await _applied(conn, schema)
        if applied is not None:
            error = _too_new(schema, applied, database.where)
            if error is not None:
                raise error
            pending = [m for m in MIGRATIONS if m.version not in applied]
            if not pending:
                return SchemaVersions(schema, applied, ())
        else:
            applied = ()
            pending = list(MIGRATIONS)
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        # The connection's search_path names the schema; set it again now that it exists.
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        await conn.execute(_CREATE_VERSION_TABLE)
        for migration in pending:
            started = time.monotonic()
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (migration.version, migration.description),
            )
            logger.info(
                "PostgreSQL schema %s: applied migration %04d (%s) in %.3f s",
                schema,
                migration.version,
                migration.description,
                time.monotonic() - started,
            )
        return SchemaVersions(schema, applied, tuple(m.version for m in pending))

    return await database.run(run, "migrate")


async def status(database: Database) -> SchemaVersions:
    """The database schema's versions, without changing anything."""
    schema = database.schema

    async def run(conn: Connection) -> SchemaVersions:
        applied = await _applied(conn, schema) or ()
        error = _too_new(schema, applied, database.where)
        if error is not None:
            raise error
        pending = tuple(m.version for m in MIGRATIONS if m.version not in applied)
        return SchemaVersions(schema, applied, pending)

    return await database.run(run, "check schema", transaction=False)


async def check_schema(database: Database) -> SchemaVersions:
    """:class:`SchemaVersionError` unless the schema is up to date (``migrate=False``)."""
    found = await status(database)
    if not found.up_to_date:
        at = max(found.applied) if found.applied else "none (empty)"
        raise SchemaVersionError(
            f"PostgreSQL schema {found.schema!r} on {database.where} is at version {at}, this"
            f" wfe-postgres needs {LATEST_VERSION} (pending: "
            f"{', '.join(f'{v:04d}' for v in found.pending)}) and migrate is off: run"
            " `wfe migrate` (or wfe_postgres.migrations.apply_migrations(url)) with a role that"
            " may run DDL, or start one host with migrate=true"
        )
    return found


async def _with_database(url: str, options: PostgresOptions | None, fn: Any) -> SchemaVersions:
    from wfe_postgres._database import Database
    from wfe_postgres.options import parse_url

    database = Database(parse_url(url, options))
    try:
        # Without the providers' own migration step: fn does the work.
        await database.open(schema=False)
        result: SchemaVersions = await fn(database)
        return result
    finally:
        await database.close()


async def apply_migrations(url: str, options: PostgresOptions | None = None) -> SchemaVersions:
    """Bring the schema at ``url`` (``options.schema``) up to date; returns what was pending.
    For ``wfe migrate`` and deployment scripts run with a role that may run DDL."""
    return await _with_database(url, options, migrate)


async def check_migrations(url: str, options: PostgresOptions | None = None) -> SchemaVersions:
    """The schema's status at ``url`` without changing anything (``wfe migrate --check``);
    see :attr:`SchemaVersions.up_to_date`."""
    return await _with_database(url, options, status)
