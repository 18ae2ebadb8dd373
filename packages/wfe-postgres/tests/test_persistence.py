"""What the PostgreSQL persistence promises beyond the shared suite: fenced writes, writes that
store only what changed (seen in the rows' transaction ids), and the outbox's atomicity."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from wfe_core.errors import ConcurrencyError, StaleLeaseError, WorkflowNotFoundError
from wfe_core.models import Event, ExecutionPointer, WorkflowStatus
from wfe_core.testing.conformance._support import now_ms
from wfe_core.testing.conformance.persistence import make_instance, make_subscription
from wfe_postgres import PostgresPersistence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio


@pytest.fixture
async def persistence(db_url: str) -> AsyncIterator[PostgresPersistence]:
    async with PostgresPersistence(db_url) as provider:
        yield provider


@pytest.fixture
async def other(db_url: str) -> AsyncIterator[PostgresPersistence]:
    """A second provider with a pool of its own: another host's view of the database."""
    async with PostgresPersistence(db_url, share_connections=False) as provider:
        yield provider


def _rows(postgres_url: str, schema: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(postgres_url, options=f"-c search_path={schema}") as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


async def test_a_write_with_an_older_fence_is_refused_and_stores_nothing(
    persistence: PostgresPersistence, other: PostgresPersistence
) -> None:
    instance = make_instance()
    await persistence.create_workflow(instance)
    await persistence.persist_workflow(instance, fence=5)
    # Another host takes the lease over (token 6) and writes.
    newer = await other.get_workflow(instance.id)
    newer.data = {"by": "new holder"}
    await other.persist_workflow(newer, fence=6)
    # The old holder, even with the current revision (it re-read), holds token 5: refused.
    stale = await persistence.get_workflow(instance.id)
    stale.data = {"by": "old holder"}
    event = Event(name="done", key="1", data=None)
    with pytest.raises(StaleLeaseError, match="fencing token 5 is older than the newest"):
        await persistence.persist_workflow(stale, fence=5, events=[event])
    stored = await other.get_workflow(instance.id)
    assert stored.data == {"by": "new holder"}
    assert stored.revision == newer.revision
    assert await other.get_runnable_events(event.time) == []
    # StaleLeaseError is a ConcurrencyError: callers that handle one handle both.
    assert issubclass(StaleLeaseError, ConcurrencyError)


async def test_the_same_or_a_newer_fence_and_no_fence_are_accepted(
    persistence: PostgresPersistence, postgres_url: str, schema: str
) -> None:
    instance = make_instance()
    await persistence.create_workflow(instance)
    for fence in (3, 3, None, 9):
        await persistence.persist_workflow(instance, fence=fence)
    assert _rows(postgres_url, schema, "SELECT fence FROM workflows") == [(9,)]
    with pytest.raises(StaleLeaseError):
        await persistence.persist_workflow(instance, fence=8)
    # A write not made under a lease skips the check and keeps the highest fence.
    await persistence.persist_workflow(instance)
    assert _rows(postgres_url, schema, "SELECT fence FROM workflows") == [(9,)]
    assert instance.revision == 6


async def test_a_stale_revision_with_a_current_fence_is_a_plain_concurrency_error(
    persistence: PostgresPersistence,
) -> None:
    instance = make_instance()
    await persistence.create_workflow(instance)
    old = await persistence.get_workflow(instance.id)
    await persistence.persist_workflow(instance, fence=1)
    with pytest.raises(ConcurrencyError) as caught:
        await persistence.persist_workflow(old, fence=1)
    assert not isinstance(caught.value, StaleLeaseError)
    with pytest.raises(WorkflowNotFoundError):
        await persistence.persist_workflow(make_instance(), fence=1)


async def test_a_step_write_stores_only_the_changed_and_new_rows(
    persistence: PostgresPersistence, postgres_url: str, schema: str
) -> None:
    instance = make_instance(
        pointers=[ExecutionPointer(step_id=i, children=["a", "b"]) for i in range(50)]
    )
    await persistence.create_workflow(instance)
    before = dict(_rows(postgres_url, schema, "SELECT position, xmin::text FROM pointers"))
    children_before = _rows(postgres_url, schema, "SELECT xmin::text FROM pointer_children")
    changed = instance.pointers[10]
    changed.children.append("c")
    changed.sleep_until = None
    changed.active = False
    instance.pointers.append(ExecutionPointer(step_id=99))
    await persistence.persist_workflow(instance, changed_pointers=[changed.id])
    after = dict(_rows(postgres_url, schema, "SELECT position, xmin::text FROM pointers"))
    rewritten = sorted(p for p, x in after.items() if before.get(p) != x)
    assert rewritten == [10, 50]
    children_after = _rows(
        postgres_url, schema, "SELECT position, idx, xmin::text FROM pointer_children"
    )
    new_children = [(p, i) for p, i, x in children_after if (x,) not in children_before]
    assert new_children == [(10, 2)]
    stored = await persistence.get_workflow(instance.id)
    assert stored.pointers == instance.pointers


async def test_a_write_without_changed_pointers_replaces_every_row(
    persistence: PostgresPersistence,
) -> None:
    instance = make_instance(pointers=[ExecutionPointer(step_id=i) for i in range(5)])
    await persistence.create_workflow(instance)
    # Not the executor's promise: pointers removed and children replaced.
    del instance.pointers[1:3]
    instance.pointers[0].children = ["x"]
    await persistence.persist_workflow(instance)
    assert (await persistence.get_workflow(instance.id)).pointers == instance.pointers
    page = await persistence.get_pointers(instance.id, skip=1, take=10)
    assert page.total == 3
    assert page.items == instance.pointers[1:]


async def test_list_and_purge_work_on_many_instances_by_filter(
    persistence: PostgresPersistence,
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=30)
    for i in range(12):
        status = WorkflowStatus.COMPLETE if i % 2 else WorkflowStatus.RUNNABLE
        instance = make_instance(
            status=status,
            reference=f"r{i % 3}",
            complete_time=old if i % 2 else None,
        )
        await persistence.create_workflow(instance)
    page = await persistence.list_workflows(status=WorkflowStatus.COMPLETE, reference="r1")
    assert page.total == 2
    assert all(i.reference == "r1" and i.status == WorkflowStatus.COMPLETE for i in page.items)
    purged = await persistence.purge_workflows(older_than=now, statuses=[WorkflowStatus.COMPLETE])
    assert purged == 6
    assert (await persistence.list_workflows()).total == 6


async def test_a_subscription_written_while_its_event_is_being_marked_processed_reopens_it(
    persistence: PostgresPersistence, postgres_url: str, schema: str
) -> None:
    # A delivery finds no subscription, then marks its event processed; a wait storing the
    # subscription at the same time must still leave the event unprocessed (the recovery
    # sweep's, and the copy the waiting pass queues, deliver it). Seen in the chaos test
    # with three workers: the write's statement began before the mark committed, saw the
    # event unprocessed in its snapshot and left it alone; the mark then won, and the
    # workflow waited for ever.
    instance = make_instance()
    await persistence.create_workflow(instance)
    event = Event("approval", "42", time=now_ms() - timedelta(seconds=1))
    await persistence.create_event(event)
    options = f"-c search_path={schema}"
    async with await psycopg.AsyncConnection.connect(postgres_url, options=options) as mark:
        # The delivery's mark, not committed yet.
        await mark.execute("UPDATE events SET is_processed = true WHERE id = %s", (event.id,))
        subscription = make_subscription(instance.id, subscribe_as_of=event.time)
        async with anyio.create_task_group() as tg:
            write = functools.partial(
                persistence.persist_workflow, instance, subscriptions=[subscription]
            )
            tg.start_soon(write)
            # Until the write waits for the mark's row lock, or is done without waiting (the
            # server's view is polled: nothing tells this test).
            with anyio.fail_after(10):
                while (  # noqa: ASYNC110
                    not _rows(
                        postgres_url,
                        schema,
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                    )
                    and instance.revision == 1
                ):
                    await anyio.sleep(0.01)
            await mark.commit()
    assert (await persistence.get_event(event.id)).is_processed is False
