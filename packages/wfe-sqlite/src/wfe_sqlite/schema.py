"""The database schema: SQLAlchemy Core tables for queries, and the migrations that build them.

Every table has an ``INTEGER PRIMARY KEY`` ``seq``: SQLite keeps such a rowid stable (also
across ``VACUUM``), so it breaks ties between equal timestamps in the order rows were stored.
Times are integer microseconds since the Unix epoch (UTC), so SQL compares and orders them
exactly. Model objects are stored as JSON text (``document``); the other columns exist only
for the queries and are derived from the document on every write. A workflow instance is
its head (``wfe_workflows.document``, the instance without its pointers), one row per
pointer (``wfe_pointers``, the pointer without its ``children``) and one row per child id
(``wfe_pointer_children``), so a write stores only what changed (see
:mod:`wfe_sqlite.documents`).

Migrations are plain DDL frozen at the version that introduced them; never edit one that has
shipped, add a new one at the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import attrs
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)

from wfe_core.errors import ProviderError

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "SchemaVersionError",
    "current_version",
    "migrate",
]

logger = logging.getLogger(__name__)

metadata = MetaData()

schema_version = Table(
    "wfe_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", Integer, nullable=False),
)

workflows = Table(
    "wfe_workflows",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("id", Text, nullable=False, unique=True),
    Column("definition_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("reference", Text),
    Column("next_execution", Integer),
    Column("create_time", Integer, nullable=False),
    Column("complete_time", Integer),
    Column("revision", Integer, nullable=False),
    Column("document", Text, nullable=False),
    # The highest fencing token a write carried (NULL: none did yet).
    Column("fence", Integer),
)

pointers = Table(
    "wfe_pointers",
    metadata,
    Column("workflow_id", Text, primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("document", Text, nullable=False),
)

pointer_children = Table(
    "wfe_pointer_children",
    metadata,
    Column("workflow_id", Text, primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("child_id", Text, nullable=False),
)

events = Table(
    "wfe_events",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("id", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("time", Integer, nullable=False),
    Column("is_processed", Integer, nullable=False),
    Column("document", Text, nullable=False),
)

subscriptions = Table(
    "wfe_subscriptions",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("id", Text, nullable=False, unique=True),
    Column("workflow_id", Text, nullable=False),
    Column("event_name", Text, nullable=False),
    Column("event_key", Text, nullable=False),
    Column("subscribe_as_of", Integer, nullable=False),
    Column("create_time", Integer, nullable=False),
    Column("terminated", Integer, nullable=False),
    Column("document", Text, nullable=False),
)

errors = Table(
    "wfe_errors",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("workflow_id", Text, nullable=False),
    Column("time", Integer, nullable=False),
    Column("document", Text, nullable=False),
)

queue_items = Table(
    "wfe_queue",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("queue", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    # NULL while the item waits; the delivery's receipt while it is in flight.
    Column("receipt", Text),
    # Waiting: when it may be handed out. In flight: when the delivery lapses.
    Column("visible_at", Integer, nullable=False),
    # Deliveries so far of this enqueued item.
    Column("attempt", Integer, nullable=False),
    Column("enqueued_at", Integer, nullable=False),
    Column("delivered_at", Integer),
)

locks = Table(
    "wfe_locks",
    metadata,
    Column("key", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("token", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    # Where the holder runs, so a lease whose process is gone can be taken over at once.
    Column("holder_host", Text),
    Column("holder_pid", Integer),
)

lock_tokens = Table(
    "wfe_lock_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", Integer, nullable=False),
)


class SchemaVersionError(ProviderError):
    """The database file was written by a newer wfe-sqlite than the one running.

    Opening it anyway could corrupt data the newer version relies on, so it is refused.
    """


@attrs.frozen
class Migration:
    """One step of the schema: ``version`` is applied after every lower one."""

    version: int
    description: str
    statements: tuple[str, ...]
    #: Extra work in Python after the statements (rarely needed).
    after: Callable[[Connection], None] | None = None


def _split_documents(conn: Connection) -> None:
    """Migration 4: move every pointer out of its instance's document into rows."""
    # Imported here: the module encodes as the provider does (and imports the models).
    from wfe_sqlite.documents import dumps

    raw = cast("sqlite3.Connection", conn.connection.driver_connection)
    rows = raw.execute("SELECT id, document FROM wfe_workflows ORDER BY seq").fetchall()
    for workflow_id, document in rows:
        try:
            instance = json.loads(document)
            stored = instance.get("pointers") or []
        except (ValueError, AttributeError) as exc:
            raise ProviderError(
                f"migration 4: the document of workflow {workflow_id} cannot be read: {exc}"
            ) from exc
        pointer_rows: list[tuple[str, int, str]] = []
        child_rows: list[tuple[str, int, int, str]] = []
        for position, pointer in enumerate(stored):
            children = pointer.pop("children", None) or []
            pointer_rows.append((workflow_id, position, dumps(pointer)))
            child_rows.extend(
                (workflow_id, position, index, child) for index, child in enumerate(children)
            )
        raw.executemany(
            "INSERT INTO wfe_pointers (workflow_id, position, document) VALUES (?, ?, ?)",
            pointer_rows,
        )
        raw.executemany(
            "INSERT INTO wfe_pointer_children (workflow_id, position, idx, child_id)"
            " VALUES (?, ?, ?, ?)",
            child_rows,
        )
        instance["pointers"] = []
        raw.execute(
            "UPDATE wfe_workflows SET document = ? WHERE id = ?", (dumps(instance), workflow_id)
        )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "workflow instances, events, subscriptions and errors",
        (
            """CREATE TABLE wfe_workflows (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                definition_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                status TEXT NOT NULL,
                reference TEXT,
                next_execution INTEGER,
                create_time INTEGER NOT NULL,
                complete_time INTEGER,
                revision INTEGER NOT NULL,
                document TEXT NOT NULL
            )""",
            "CREATE INDEX ix_wfe_workflows_due ON wfe_workflows (status, next_execution)",
            "CREATE INDEX ix_wfe_workflows_definition ON wfe_workflows (definition_id)",
            "CREATE INDEX ix_wfe_workflows_reference ON wfe_workflows (reference)",
            "CREATE INDEX ix_wfe_workflows_created ON wfe_workflows (create_time)",
            "CREATE INDEX ix_wfe_workflows_completed ON wfe_workflows (status, complete_time)",
            """CREATE TABLE wfe_events (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                key TEXT NOT NULL,
                time INTEGER NOT NULL,
                is_processed INTEGER NOT NULL,
                document TEXT NOT NULL
            )""",
            "CREATE INDEX ix_wfe_events_name_key ON wfe_events (name, key, time)",
            "CREATE INDEX ix_wfe_events_unprocessed ON wfe_events (is_processed, time)",
            """CREATE TABLE wfe_subscriptions (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                workflow_id TEXT NOT NULL,
                event_name TEXT NOT NULL,
                event_key TEXT NOT NULL,
                subscribe_as_of INTEGER NOT NULL,
                create_time INTEGER NOT NULL,
                terminated INTEGER NOT NULL,
                document TEXT NOT NULL
            )""",
            "CREATE INDEX ix_wfe_subscriptions_match"
            " ON wfe_subscriptions (event_name, event_key, subscribe_as_of)",
            "CREATE INDEX ix_wfe_subscriptions_workflow ON wfe_subscriptions (workflow_id)",
            """CREATE TABLE wfe_errors (
                seq INTEGER PRIMARY KEY,
                workflow_id TEXT NOT NULL,
                time INTEGER NOT NULL,
                document TEXT NOT NULL
            )""",
            "CREATE INDEX ix_wfe_errors_workflow ON wfe_errors (workflow_id, time)",
        ),
    ),
    Migration(
        2,
        "work queue",
        (
            """CREATE TABLE wfe_queue (
                seq INTEGER PRIMARY KEY,
                queue TEXT NOT NULL,
                item_id TEXT NOT NULL,
                receipt TEXT,
                visible_at INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                enqueued_at INTEGER NOT NULL,
                delivered_at INTEGER
            )""",
            # At most one waiting copy of an id per queue (enqueue is INSERT OR IGNORE).
            "CREATE UNIQUE INDEX ux_wfe_queue_waiting ON wfe_queue (queue, item_id)"
            " WHERE receipt IS NULL",
            # The FIFO head of the waiting items.
            "CREATE INDEX ix_wfe_queue_fifo ON wfe_queue (queue, seq) WHERE receipt IS NULL",
            # The next thing to become due: a delayed item or a lapsing delivery.
            "CREATE INDEX ix_wfe_queue_due ON wfe_queue (queue, visible_at)",
            # Lapsed deliveries, found without walking the waiting items.
            "CREATE INDEX ix_wfe_queue_lapsing ON wfe_queue (queue, visible_at)"
            " WHERE receipt IS NOT NULL",
            "CREATE UNIQUE INDEX ux_wfe_queue_receipt ON wfe_queue (receipt)"
            " WHERE receipt IS NOT NULL",
        ),
    ),
    Migration(
        3,
        "locks with fencing tokens",
        (
            """CREATE TABLE wfe_locks (
                key TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                token INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            )""",
            # One counter for every key: tokens grow per key because they grow globally, and
            # a released key's row can be deleted without losing its last token.
            """CREATE TABLE wfe_lock_tokens (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                value INTEGER NOT NULL
            )""",
            "INSERT INTO wfe_lock_tokens (id, value) VALUES (1, 0)",
        ),
    ),
    Migration(
        4,
        "pointers as rows of their own (a write stores only the pointers that changed)",
        (
            """CREATE TABLE wfe_pointers (
                workflow_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                document TEXT NOT NULL,
                PRIMARY KEY (workflow_id, position)
            ) WITHOUT ROWID""",
            """CREATE TABLE wfe_pointer_children (
                workflow_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                idx INTEGER NOT NULL,
                child_id TEXT NOT NULL,
                PRIMARY KEY (workflow_id, position, idx)
            ) WITHOUT ROWID""",
        ),
        after=_split_documents,
    ),
    Migration(
        5,
        "fencing: the highest lease token a write of each instance carried",
        # NULL for every stored instance: no write carried a fence yet, so the first one
        # under a lease is accepted whatever its token.
        ("ALTER TABLE wfe_workflows ADD COLUMN fence INTEGER",),
    ),
    Migration(
        6,
        "lock holders: the host name and process id of each lease's holder",
        # NULL for leases taken before: they lapse as they always did.
        (
            "ALTER TABLE wfe_locks ADD COLUMN holder_host TEXT",
            "ALTER TABLE wfe_locks ADD COLUMN holder_pid INTEGER",
        ),
    ),
)

#: The schema version this code writes.
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The schema version of the database behind ``conn`` (0 for a new, empty database)."""
    exists = conn.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'wfe_schema_version'")
    ).first()
    if exists is None:
        return 0
    version = conn.execute(text("SELECT max(version) FROM wfe_schema_version")).scalar()
    return int(version or 0)


def read_version(conn: sqlite3.Connection) -> int:
    """:func:`current_version` on a plain ``sqlite3`` connection (read-only checks)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'wfe_schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM wfe_schema_version").fetchone()
    return int(row[0] or 0)


def migrate(
    conn: Connection,
    *,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    where: str = "database",
) -> int:
    """Bring the schema up to date in one transaction; returns the resulting version.

    ``conn`` must not be in a transaction: this takes the write lock (``BEGIN IMMEDIATE``)
    first, so processes opening the same new file at once migrate it exactly once.
    Raises :class:`SchemaVersionError` when the database is newer than ``migrations``.
    """
    latest = migrations[-1].version
    with conn.begin():
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS wfe_schema_version ("
                " version INTEGER PRIMARY KEY,"
                " description TEXT NOT NULL,"
                " applied_at INTEGER NOT NULL)"
            )
        )
        version = current_version(conn)
        if version > latest:
            raise SchemaVersionError(
                f"{where} has schema version {version}, but this wfe-sqlite only knows versions "
                f"up to {latest}: it was written by a newer wfe-sqlite. Upgrade wfe-sqlite to "
                "open it (it is left untouched)."
            )
        for migration in migrations:
            if migration.version <= version:
                continue
            logger.info(
                "migrating %s to schema version %d (%s)",
                where,
                migration.version,
                migration.description,
            )
            for statement in migration.statements:
                conn.execute(text(statement))
            if migration.after is not None:
                migration.after(conn)
            conn.execute(
                schema_version.insert().values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=time.time_ns() // 1000,
                )
            )
            version = migration.version
    return version
