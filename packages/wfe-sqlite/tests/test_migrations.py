"""The schema: created on first open, a no-op when current, upgraded from older versions, and
a newer one refused."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wfe_core.errors import ProviderError, StaleLeaseError
from wfe_core.models import WorkflowInstance
from wfe_core.providers import QueueName
from wfe_core.serialization import to_primitive
from wfe_host import WorkflowHost
from wfe_sqlite import SchemaVersionError, SqliteLock, SqlitePersistence, SqliteQueue
from wfe_sqlite.schema import LATEST_VERSION, MIGRATIONS

if TYPE_CHECKING:
    from types import ModuleType


def _versions(path: Path) -> list[tuple[int, str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT version, description, applied_at FROM wfe_schema_version ORDER BY version"
        ).fetchall()


def _tables(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


@pytest.mark.anyio
async def test_fresh_file_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    async with SqlitePersistence(f"sqlite:///{path}"):
        pass
    assert [v for v, _, _ in _versions(path)] == [m.version for m in MIGRATIONS]
    assert LATEST_VERSION == MIGRATIONS[-1].version == len(MIGRATIONS)
    assert {
        "wfe_schema_version",
        "wfe_workflows",
        "wfe_events",
        "wfe_subscriptions",
        "wfe_errors",
        "wfe_queue",
        "wfe_locks",
        "wfe_lock_tokens",
    } <= _tables(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        # WAL is a property of the file: it stays after the providers close.
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.anyio
async def test_reopening_a_current_file_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    instance = WorkflowInstance("flow", 1, data={"n": 1})
    async with SqlitePersistence(url) as persistence:
        await persistence.create_workflow(instance)
    before = _versions(tmp_path / "again.db")
    for _ in range(2):
        async with SqlitePersistence(url) as persistence, SqliteQueue(url), SqliteLock(url):
            assert (await persistence.get_workflow(instance.id)).data == {"n": 1}
    assert _versions(tmp_path / "again.db") == before


def _build_version_1(path: Path) -> WorkflowInstance:
    """A file as wfe-sqlite 0.1 with only schema version 1 wrote it, holding one instance."""
    instance = WorkflowInstance("legacy-flow", 3, data={"kept": True}, revision=4)
    document = to_primitive(instance)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE wfe_schema_version (version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        for statement in MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO wfe_schema_version VALUES (1, ?, 1)", (MIGRATIONS[0].description,)
        )
        conn.execute(
            "INSERT INTO wfe_workflows (id, definition_id, version, status, reference,"
            " next_execution, create_time, complete_time, revision, document)"
            " VALUES (?, ?, ?, 'runnable', NULL, NULL, 0, NULL, 4, ?)",
            (instance.id, instance.definition_id, instance.version, json.dumps(document)),
        )
    return instance


@pytest.mark.anyio
async def test_older_file_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    instance = _build_version_1(path)
    assert "wfe_queue" not in _tables(path)
    url = f"sqlite:///{path}"
    async with SqlitePersistence(url) as persistence, SqliteQueue(url) as queue:
        loaded = await persistence.get_workflow(instance.id)
        assert (loaded.definition_id, loaded.revision, loaded.data) == (
            "legacy-flow",
            4,
            {"kept": True},
        )
        await persistence.persist_workflow(loaded)
        assert loaded.revision == 5
        # The tables of the later migrations work.
        await queue.enqueue(QueueName.WORKFLOW, instance.id)
        message = await queue.dequeue(QueueName.WORKFLOW)
        assert message is not None
        assert message.item_id == instance.id
    versions = _versions(path)
    assert [v for v, _, _ in versions] == list(range(1, LATEST_VERSION + 1))
    assert versions[0][2] == 1  # version 1's row is the original one


@pytest.mark.anyio
async def test_newer_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    url = f"sqlite:///{path}"
    async with SqlitePersistence(url):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO wfe_schema_version VALUES (?, 'from the future', 2)", (99,))
    before = _versions(path)
    for provider in (SqlitePersistence(url), SqliteQueue(url), SqliteLock(url)):
        with pytest.raises(SchemaVersionError, match="schema version 99") as caught:
            await provider.open()
        assert isinstance(caught.value, ProviderError)
        assert "newer wfe-sqlite" in str(caught.value)
        assert f"only knows versions up to {LATEST_VERSION}" in str(caught.value)
    assert _versions(path) == before


@pytest.mark.anyio
async def test_a_failed_open_can_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "retry.db"
    url = f"sqlite:///{path}"
    async with SqlitePersistence(url):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO wfe_schema_version VALUES (99, 'from the future', 2)")
    persistence = SqlitePersistence(url)
    with pytest.raises(SchemaVersionError):
        await persistence.open()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM wfe_schema_version WHERE version = 99")
    async with persistence:
        assert await persistence.next_execution_time() is None


#: A file written by wfe-sqlite at schema version 3 (see data/make_schema_v3.py).
SCHEMA_V3 = Path(__file__).parent / "data" / "schema-v3.db"


def _maker() -> ModuleType:
    """data/make_schema_v3.py, which holds the definition the file's workflows run."""
    spec = importlib.util.spec_from_file_location(
        "make_schema_v3", SCHEMA_V3.with_name("make_schema_v3.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_a_file_of_schema_version_3_keeps_every_pointer_and_finishes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    shutil.copyfile(SCHEMA_V3, path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT max(version) FROM wfe_schema_version").fetchone() == (3,)
        before = {
            workflow_id: json.loads(document)
            for workflow_id, document in conn.execute("SELECT id, document FROM wfe_workflows")
        }
    assert sum(len(d["pointers"]) for d in before.values()) > 20
    assert any(p["children"] for d in before.values() for p in d["pointers"])

    async with WorkflowHost.from_settings({"persistence": f"sqlite:///{path}"}) as host:
        host.register(_maker().loop_definition())
        # Every instance reads back as the version 3 document held it, pointer for pointer.
        for workflow_id, document in before.items():
            loaded = await host.persistence.get_workflow(workflow_id)
            # A field the models gained since reads back as its default.
            assert to_primitive(loaded) == {**document, "trace_context": None}
            page = await host.get_workflow_pointers(workflow_id, skip=2, take=3)
            assert page.total == len(document["pointers"])
            assert [to_primitive(p) for p in page.items] == document["pointers"][2:5]
        (waiting,) = [i for i, d in before.items() if d["status"] == "runnable"]
        assert before[waiting]["data"]["i"] == 3
        # The waiting workflow goes on where it stopped, and finishes.
        for i in (3, 4, 5):
            await host.publish_event("go", f"w-{i}", i)
        finished = await host.wait_for_workflow(waiting, timeout=30)
        assert str(finished.status) == "complete"
        assert finished.data["i"] == 5
        assert sorted(finished.data["seen"]) == ["a", "b", "c"]
        assert len(finished.pointers) > len(before[waiting]["pointers"])
    assert [v for v, _, _ in _versions(path)] == list(range(1, LATEST_VERSION + 1))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        # The documents hold no pointer any more: they are rows.
        heads = [json.loads(d) for (d,) in conn.execute("SELECT document FROM wfe_workflows")]
        assert all(head["pointers"] == [] for head in heads)


@pytest.mark.anyio
async def test_a_version_3_document_that_cannot_be_read_stops_the_migration(
    tmp_path: Path,
) -> None:
    path = tmp_path / "damaged.db"
    shutil.copyfile(SCHEMA_V3, path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        (workflow_id,) = conn.execute("SELECT id FROM wfe_workflows LIMIT 1").fetchone()
        conn.execute("UPDATE wfe_workflows SET document = '[1, 2' WHERE id = ?", (workflow_id,))
    with pytest.raises(ProviderError, match=f"migration 4: the document of workflow {workflow_id}"):
        async with SqlitePersistence(f"sqlite:///{path}"):
            pass
    # Nothing of the migration is kept: the file is still at version 3, as it was.
    assert max(v for v, _, _ in _versions(path)) == 3
    assert "wfe_pointers" not in _tables(path)


@pytest.mark.anyio
async def test_a_file_of_schema_version_3_gets_fencing_for_its_instances(tmp_path: Path) -> None:
    """Migration 5 adds the highest accepted fence per instance, empty for the instances a
    file already holds: the first write under a lease is accepted whatever its token, and
    from then on an older token is refused."""
    path = tmp_path / "v3.db"
    shutil.copyfile(SCHEMA_V3, path)
    async with SqlitePersistence(f"sqlite:///{path}") as persistence:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            rows = conn.execute("SELECT id, revision, fence FROM wfe_workflows").fetchall()
        assert rows
        assert all(fence is None for _, _, fence in rows)
        workflow_id, revision, _ = rows[0]
        instance = await persistence.get_workflow(workflow_id)
        await persistence.persist_workflow(instance, fence=1)
        assert instance.revision == revision + 1
        with pytest.raises(StaleLeaseError):
            await persistence.persist_workflow(instance, fence=0)
        assert (await persistence.get_workflow(workflow_id)).revision == revision + 1
    assert max(v for v, _, _ in _versions(path)) == LATEST_VERSION >= 5


@pytest.mark.anyio
async def test_a_file_of_schema_version_3_gets_lock_holders(tmp_path: Path) -> None:
    """Migration 6 records where each lease's holder runs; a lease taken before it (no
    holder recorded) is never broken, only lapses."""
    from wfe_sqlite import SqliteLock

    path = tmp_path / "v3.db"
    shutil.copyfile(SCHEMA_V3, path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO wfe_locks (key, owner, token, expires_at)"
            " VALUES ('old', 'gone', 1, 9999999999999999)"
        )
    async with SqliteLock(f"sqlite:///{path}") as lock:
        holder = await lock.holder("old")
        assert holder is not None
        assert (holder.owner, holder.host, holder.pid) == ("gone", None, None)
        assert await lock.acquire("old", owner="new", ttl=30) is None
        lease = await lock.acquire("fresh", owner="new", ttl=30)
        assert lease is not None
        holder = await lock.holder("fresh")
        assert holder is not None
        assert holder.pid == os.getpid()
    assert max(v for v, _, _ in _versions(path)) == LATEST_VERSION >= 6
