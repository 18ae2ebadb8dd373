"""Scenario 6's store: a SQLite file holding many finished workflow instances.

Seeding goes through the provider's own tables, fast: one 3-step workflow is run to its end
by a real host (so its row and JSON document are exactly what wfe-sqlite writes), then that
row and its pointer rows are cloned ``count`` times by ``INSERT ... SELECT`` over a
recursive CTE, each clone with a new id (also replaced inside its document) and slightly
earlier times, in one transaction. The file is checkpointed and then copied for every run,
so each run starts from the same store.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from typing import Any

from bench.peers import wfe

_CLONE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO wfe_workflows (id, definition_id, version, status, reference, next_execution,
                           create_time, complete_time, revision, document)
SELECT printf('seed%028d', i), definition_id, version, status, reference, NULL,
       create_time - i * 1000, complete_time - i * 1000, revision,
       replace(document, :template, printf('seed%028d', i))
FROM wfe_workflows, n WHERE wfe_workflows.id = :template
"""
# The template's pointer rows and child ids, for every clone (schema version 4 on).
_CLONE_POINTERS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO wfe_pointers (workflow_id, position, document)
SELECT printf('seed%028d', i), position, document
FROM wfe_pointers, n WHERE wfe_pointers.workflow_id = :template
"""
_CLONE_CHILDREN = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO wfe_pointer_children (workflow_id, position, idx, child_id)
SELECT printf('seed%028d', i), position, idx, child_id
FROM wfe_pointer_children, n WHERE wfe_pointer_children.workflow_id = :template
"""


async def seed(path: str, count: int) -> dict[str, Any]:
    """Create ``path`` holding ``count`` (+1) finished instances of ``bench-3``."""
    wfe.remove_database(path)
    started = time.perf_counter()
    async with wfe.make_host("sqlite", path) as host:
        host.register(wfe.chain(3, "bench-3"))
        template = await host.start_workflow("bench-3", {})
        await host.wait_for_workflow(template, timeout=wfe.TIMEOUT)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for statement in (_CLONE, _CLONE_POINTERS, _CLONE_CHILDREN):
            conn.execute(statement, {"count": count, "template": template})
        conn.execute("COMMIT")
        stored = conn.execute("SELECT count(*) FROM wfe_workflows").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = conn.execute(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
        ).fetchone()[0]
    finally:
        conn.close()
    return {
        "stored_instances": stored,
        "seconds": time.perf_counter() - started,
        "file_mib": size / 2**20,
    }


def copy_store(template: str, path: str) -> None:
    """A fresh copy of the seeded file for one run, on disk before the run starts.

    Synced: a copy left in the OS's write cache would be flushed by the first checkpoint of
    the run (SQLite syncs the database file then), so the run would pay for writing the
    whole 200 MB copy instead of only its own changes, as a store that is really "already
    stored" would not."""
    wfe.remove_database(path)
    shutil.copyfile(template, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# PostgreSQL: the same clone in wfe-postgres's schema ("wfe"); each run gets a copy of the
# seeded database (CREATE DATABASE ... TEMPLATE), analysed, so it starts from the same store.
_PG_CLONE = """
INSERT INTO wfe.workflows (id, definition_id, version, status, reference, next_execution,
    create_time, complete_time, revision, pointer_count, document)
SELECT 'seed' || lpad(i::text, 28, '0'), definition_id, version, status, reference, NULL,
       create_time - i * interval '1 ms', complete_time - i * interval '1 ms', revision,
       pointer_count, replace(document, %(template)s, 'seed' || lpad(i::text, 28, '0'))
FROM wfe.workflows, generate_series(1, %(count)s) AS i WHERE id = %(template)s;
INSERT INTO wfe.pointers (workflow_id, position, document)
SELECT 'seed' || lpad(i::text, 28, '0'), position, document
FROM wfe.pointers, generate_series(1, %(count)s) AS i WHERE workflow_id = %(template)s;
INSERT INTO wfe.pointer_children (workflow_id, position, idx, child_id)
SELECT 'seed' || lpad(i::text, 28, '0'), position, idx, child_id
FROM wfe.pointer_children, generate_series(1, %(count)s) AS i WHERE workflow_id = %(template)s;
"""


async def seed_postgres(url: str, count: int) -> dict[str, Any]:
    """Fill the (empty) database at ``url`` with ``count`` (+1) finished ``bench-3``
    instances, as :func:`seed` does for SQLite."""
    import psycopg

    started = time.perf_counter()
    async with wfe.make_host("postgres", url) as host:
        host.register(wfe.chain(3, "bench-3"))
        template = await host.start_workflow("bench-3", {})
        await host.wait_for_workflow(template, timeout=wfe.TIMEOUT)
    with psycopg.connect(url) as conn:
        # One statement at a time: with parameters, the server takes one per command.
        for statement in filter(str.strip, _PG_CLONE.split(";")):
            conn.execute(statement.encode(), {"count": count, "template": template})
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        stored = conn.execute("SELECT count(*) FROM wfe.workflows").fetchone()
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return {
        "stored_instances": stored[0] if stored else 0,
        "seconds": time.perf_counter() - started,
        "database_mib": (size[0] if size else 0) / 2**20,
    }
