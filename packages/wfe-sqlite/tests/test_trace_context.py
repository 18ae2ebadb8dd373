"""Trace contexts in a database file written before they existed: no migration, the
instances and events written then read back without one, and gain one when written again."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from wfe_core.models import Event, TraceContext, WorkflowInstance
from wfe_sqlite import SqlitePersistence

if TYPE_CHECKING:
    from pathlib import Path

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.anyio
async def test_documents_written_before_trace_contexts_read_back_without_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    context = TraceContext((("traceparent", TRACEPARENT),))
    instance = WorkflowInstance("flow", 1, data={"n": 1}, trace_context=context)
    event = Event("approval", "42", trace_context=context)
    async with SqlitePersistence(f"sqlite:///{path}") as persistence:
        await persistence.create_workflow(instance)
        await persistence.create_event(event)
    # What an earlier wfe-sqlite wrote: the same documents without the key.
    with sqlite3.connect(path) as conn:
        for table in ("wfe_workflows", "wfe_events"):
            conn.execute(f"UPDATE {table} SET document = json_remove(document, '$.trace_context')")
            (kept,) = conn.execute(
                f"SELECT count(*) FROM {table} WHERE document LIKE '%trace_context%'"
            ).fetchone()
            assert kept == 0
    conn.close()

    async with SqlitePersistence(f"sqlite:///{path}") as persistence:
        old = await persistence.get_workflow(instance.id)
        assert old.trace_context is None
        assert old.data == {"n": 1}
        assert (await persistence.get_event(event.id)).trace_context is None
        old.trace_context = context
        await persistence.persist_workflow(old, changed_pointers=())
        assert (await persistence.get_workflow(instance.id)).trace_context == context
