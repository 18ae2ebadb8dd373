"""A running instance's writes leave the indexes alone: PostgreSQL stores the new versions of
its head and pointer rows on their own pages (heap-only tuples), which it can only when the
pages have room (migration 4). Read from the server's table statistics."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowInstance
from wfe_core.testing.conformance.persistence import make_instance
from wfe_postgres import PostgresPersistence

pytestmark = pytest.mark.anyio

#: Instances written at once: enough to fill many pages of each table.
INSTANCES = 200


def _updates(postgres_url: str, schema: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname IN ('workflows', 'pointers')",
            (schema,),
        ).fetchall()
    return {name: (updated, hot) for name, updated, hot in rows}


async def test_the_writes_of_a_running_instance_are_heap_only(
    db_url: str, postgres_url: str, schema: str
) -> None:
    async with PostgresPersistence(db_url) as persistence:
        instances = [make_instance() for _ in range(INSTANCES)]

        async def create(instance: WorkflowInstance) -> None:
            instance.pointers = [ExecutionPointer(step_id=0, status=PointerStatus.RUNNING)]
            await persistence.create_workflow(instance)

        async def next_step(instance: WorkflowInstance, step: int) -> None:
            # As the executor writes a step's end: the running step ends, the next starts.
            ended = instance.pointers[-1]
            ended.status = PointerStatus.COMPLETE
            ended.active = False
            instance.pointers.append(ExecutionPointer(step_id=step, status=PointerStatus.RUNNING))
            await persistence.persist_workflow(instance, changed_pointers={ended.id})

        # At once, as a host running many workflows writes them (in shared transactions).
        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(create, instance)
        for step in (1, 2):
            async with anyio.create_task_group() as tg:
                for instance in instances:
                    tg.start_soon(next_step, instance, step)
    # The pool's backends report their statistics as they exit (soon after the pool closes).
    expected = 2 * INSTANCES
    for _ in range(600):
        found = _updates(postgres_url, schema)
        if all(found.get(table, (0, 0))[0] >= expected for table in ("workflows", "pointers")):
            break
        await anyio.sleep(0.05)
    else:
        pytest.fail(f"the statistics never counted the {expected} updates: {found}")
    # Nothing indexed changes in these writes, so each can be heap-only (on full pages: 27 of
    # the 400 writes of workflows, 19 of pointers).
    for table, (updated, hot) in found.items():
        assert hot >= 0.9 * updated, f"{table}: {hot} of {updated} updates heap-only"
