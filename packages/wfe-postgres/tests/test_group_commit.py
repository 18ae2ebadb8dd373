"""Group commit: writes and leases made at the same time go out together (one round trip,
one commit), and each caller still gets its own outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import psycopg
import pytest
from psycopg import sql

from wfe_core.errors import (
    ConcurrencyError,
    LockNotHeldError,
    StaleLeaseError,
    WorkflowNotFoundError,
)
from wfe_core.models import Event, ExecutionPointer, PointerStatus, WorkflowStatus
from wfe_core.providers import Lease, LeaseRequest
from wfe_core.testing.conformance.persistence import make_instance
from wfe_postgres import PostgresLock, PostgresPersistence
from wfe_postgres._batch import batcher_of
from wfe_postgres.lock import lock_topic

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_core.models import WorkflowInstance

pytestmark = pytest.mark.anyio

#: Writes made at once in these tests.
CONCURRENT = 40


@pytest.fixture
async def persistence(db_url: str) -> AsyncIterator[PostgresPersistence]:
    async with PostgresPersistence(db_url) as provider:
        yield provider


async def _write(persistence: PostgresPersistence, instance: WorkflowInstance) -> None:
    await persistence.persist_workflow(instance, changed_pointers=[])


async def _created(persistence: PostgresPersistence, count: int) -> list[WorkflowInstance]:
    instances = [make_instance() for _ in range(count)]
    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(persistence.create_workflow, instance)
    return instances


async def test_concurrent_writes_are_sent_in_batches_and_all_stored(
    persistence: PostgresPersistence, db_url: str
) -> None:
    batcher = batcher_of(persistence.database)
    batches_before = batcher.batches
    instances = await _created(persistence, CONCURRENT)
    for instance in instances:
        instance.status = WorkflowStatus.COMPLETE
        instance.data = {"written": instance.id}

    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(_write, persistence, instance)

    # Fewer round trips than writes: the creates and the writes made at once were grouped.
    assert batcher.batches > batches_before
    for instance in instances:
        assert instance.revision == 2
        stored = await persistence.get_workflow(instance.id)
        assert (stored.status, stored.data, stored.revision) == (
            WorkflowStatus.COMPLETE,
            {"written": instance.id},
            2,
        )


async def test_a_refused_write_in_a_batch_fails_alone(persistence: PostgresPersistence) -> None:
    instances = await _created(persistence, CONCURRENT)
    existing = Event("approval", "1", time=make_instance().create_time)
    await persistence.create_event(existing)
    # One write with an event id already stored (its statement fails: a unique violation
    # that aborts the batch's transaction), one with a stale revision, one with a stale
    # fence: each gets its own error, the others are stored.
    duplicate, stale, fenced = instances[0], instances[1], instances[2]
    await persistence.persist_workflow(fenced, changed_pointers=[], fence=10)
    stale.revision = 7
    outcomes: dict[str, BaseException | None] = {}

    async def write(instance: WorkflowInstance) -> None:
        events = (
            [Event("approval", "2", time=existing.time, id=existing.id)]
            if instance is duplicate
            else []
        )
        fence = 3 if instance is fenced else None
        try:
            await persistence.persist_workflow(
                instance, events=events, changed_pointers=[], fence=fence
            )
        except ConcurrencyError as exc:
            outcomes[instance.id] = exc
        else:
            outcomes[instance.id] = None

    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(write, instance)

    assert isinstance(outcomes.pop(duplicate.id), ConcurrencyError)
    assert isinstance(outcomes.pop(fenced.id), StaleLeaseError)
    stale_error = outcomes.pop(stale.id)
    assert isinstance(stale_error, ConcurrencyError)
    assert not isinstance(stale_error, StaleLeaseError)
    assert set(outcomes.values()) == {None}
    for instance in instances[3:]:
        assert (await persistence.get_workflow(instance.id)).revision == 2
    assert (await persistence.get_workflow(duplicate.id)).revision == 1
    assert (await persistence.get_event(existing.id)).key == "1"


async def test_leases_taken_at_once_are_each_granted_once(db_url: str) -> None:
    async with PostgresLock(db_url) as lock:
        leases = []

        async def take(key: str) -> None:
            lease = await lock.acquire(key, owner=f"owner-{key}", ttl=30)
            assert lease is not None
            leases.append(lease)
            # The same key again, at once, by another owner: refused while held.
            assert await lock.acquire(key, owner="intruder", ttl=30) is None

        async with anyio.create_task_group() as tg:
            for index in range(CONCURRENT):
                tg.start_soon(take, f"k{index}")
        tokens = [lease.token for lease in leases]
        assert len(set(tokens)) == CONCURRENT

        async with anyio.create_task_group() as tg:
            for lease in leases:
                tg.start_soon(lock.release, lease)
        again = await lock.acquire("k0", owner="next", ttl=30)
        assert again is not None
        assert again.token > max(tokens)


async def test_a_cancelled_write_waiting_for_its_batch_is_not_sent(
    persistence: PostgresPersistence, db_url: str
) -> None:
    instances = await _created(persistence, CONCURRENT)
    cancelled = instances[-1]

    async with anyio.create_task_group() as tg:
        for instance in instances[:-1]:
            tg.start_soon(_write, persistence, instance)
        # They start: the first write is on its way, the others wait for the next batch.
        await anyio.lowlevel.checkpoint()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await persistence.persist_workflow(cancelled, changed_pointers=[])
    assert cancelled.revision == 1
    assert (await persistence.get_workflow(cancelled.id)).revision == 1
    # The connection pool and the batcher carry on.
    await persistence.persist_workflow(cancelled, changed_pointers=[])
    assert (await persistence.get_workflow(cancelled.id)).revision == 2
    with psycopg.connect(db_url.split("?")[0]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


async def test_writes_of_many_instances_merged_store_each_its_own_rows(
    persistence: PostgresPersistence,
) -> None:
    batcher = batcher_of(persistence.database)
    merged = batcher.merged
    instances = [make_instance() for _ in range(CONCURRENT)]
    for index, instance in enumerate(instances):
        # Each its own number of pointer rows and child ids, so a row given to the wrong
        # write shows.
        parent = ExecutionPointer(step_id=0, status=PointerStatus.RUNNING)
        children = [ExecutionPointer(step_id=1, scope=[parent.id]) for _ in range(index % 3)]
        parent.children = [child.id for child in children]
        instance.pointers = [parent, *children]
        instance.data = {"index": index}
    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(persistence.create_workflow, instance)
    # The creates were merged too.
    assert batcher.merged > merged
    merged = batcher.merged
    twice = instances[0]
    copy = await persistence.get_workflow(twice.id)
    outcomes: list[BaseException | None] = []

    async def step(instance: WorkflowInstance) -> None:
        parent = instance.pointers[0]
        new = ExecutionPointer(step_id=2, scope=[parent.id])
        parent.children.append(new.id)
        parent.persistence_data = {"by": instance.id}
        instance.pointers.append(new)
        instance.data = {"written": instance.id}
        try:
            await persistence.persist_workflow(instance, changed_pointers={parent.id})
        except ConcurrencyError as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    async with anyio.create_task_group() as tg:
        for instance in instances:
            tg.start_soon(step, instance)
        # The same instance written twice at once from the same revision: one is refused.
        tg.start_soon(step, copy)

    assert batcher.merged > merged
    assert sum(outcome is not None for outcome in outcomes) == 1
    for instance in instances[1:]:
        stored = await persistence.get_workflow(instance.id)
        assert stored.revision == 2
        assert stored.data == {"written": instance.id}
        assert stored.pointers == instance.pointers
    assert (await persistence.get_workflow(twice.id)).revision == 2


def _with_rows(instance: WorkflowInstance, index: int) -> WorkflowInstance:
    """``instance`` with its own number of pointer rows and child ids (``index % 3``
    children), so a row given to another's write shows."""
    parent = ExecutionPointer(step_id=0, status=PointerStatus.RUNNING)
    children = [ExecutionPointer(step_id=1, scope=[parent.id]) for _ in range(index % 3)]
    parent.children = [child.id for child in children]
    instance.pointers = [parent, *children]
    instance.data = {"index": index}
    return instance


def _fence(db_url: str, workflow_id: str) -> int | None:
    with psycopg.connect(db_url.split("?")[0]) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(_schema(db_url))))
        row = conn.execute("SELECT fence FROM workflows WHERE id = %s", (workflow_id,)).fetchone()
        assert row is not None
        fence: int | None = row[0]
        return fence


def _schema(db_url: str) -> str:
    return db_url.rsplit("schema=", 1)[1]


async def test_leased_creates_merged_each_take_their_own_lease_or_none(
    persistence: PostgresPersistence, db_url: str
) -> None:
    async with PostgresLock(db_url) as lock:
        assert persistence.shares_leases_with(lock)
        batcher = batcher_of(persistence.database)
        merged = batcher.merged
        stored = make_instance()
        await persistence.create_workflow(stored)
        again = make_instance()
        again.id = stored.id
        held = make_instance()
        other = await lock.acquire(held.id, owner="other", ttl=30)
        assert other is not None
        instances = [_with_rows(make_instance(), index) for index in range(CONCURRENT)]
        leases: dict[str, Lease | None] = {}
        refused: list[BaseException] = []

        async def create(instance: WorkflowInstance) -> None:
            try:
                leases[instance.id] = await persistence.create_workflow(
                    instance, lease=LeaseRequest(f"pass-{instance.id}", 30)
                )
            except ConcurrencyError as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            # The refused ones among the others (the first two creates go out alone).
            for instance in [*instances[:20], again, held, *instances[20:]]:
                tg.start_soon(create, instance)

        # Sent merged, and each create got its own outcome.
        assert batcher.merged > merged
        assert len(refused) == 1  # the stored id: no lease taken, the instance unchanged
        assert (await persistence.get_workflow(stored.id)).data == stored.data
        assert await lock.acquire(stored.id, owner="next", ttl=30) is not None
        # The key held by another: nothing stored, the other's lease untouched.
        assert leases.pop(held.id) is None
        with pytest.raises(WorkflowNotFoundError):
            await persistence.get_workflow(held.id)
        holder = await lock.holder(held.id)
        assert holder is not None
        assert holder.owner == "other"
        await lock.release(other)
        tokens = set()
        for instance in instances:
            lease = leases[instance.id]
            assert lease is not None
            assert (lease.key, lease.owner) == (instance.id, f"pass-{instance.id}")
            tokens.add(lease.token)
            holder = await lock.holder(instance.id)
            assert holder is not None
            assert holder.owner == lease.owner
            assert _fence(db_url, instance.id) == lease.token
            stored_instance = await persistence.get_workflow(instance.id)
            assert stored_instance.revision == instance.revision == 1
            assert stored_instance.pointers == instance.pointers
            assert stored_instance.data == instance.data
        assert len(tokens) == CONCURRENT
        assert min(tokens) > other.token


async def test_releasing_writes_merged_each_get_their_own_outcome(
    persistence: PostgresPersistence, db_url: str
) -> None:
    async with PostgresLock(db_url) as lock:
        batcher = batcher_of(persistence.database)
        instances = [_with_rows(make_instance(), index) for index in range(CONCURRENT)]
        leases: dict[str, Lease] = {}
        for instance in instances:
            lease = await persistence.create_workflow(instance, lease=LeaseRequest("pass", 30))
            assert lease is not None
            leases[instance.id] = lease
        # A lease lost (released, and the key taken by another), a stale revision, a fence
        # older than one the instance accepted since: each refused alone, storing nothing.
        lost, stale, fenced = instances[0], instances[1], instances[2]
        await lock.release(leases[lost.id])
        thief = await lock.acquire(lost.id, owner="thief", ttl=30)
        assert thief is not None
        stale.revision = 7
        await persistence.persist_workflow(
            fenced, changed_pointers=[], fence=leases[fenced.id].token + 1_000
        )
        before = {i.id: await persistence.get_workflow(i.id) for i in (lost, stale, fenced)}
        outcomes: dict[str, BaseException | None] = {}

        async def last_write(instance: WorkflowInstance) -> None:
            parent = instance.pointers[0]
            new = ExecutionPointer(step_id=2, scope=[parent.id])
            parent.children.append(new.id)
            parent.status = PointerStatus.COMPLETE
            instance.pointers.append(new)
            instance.status = WorkflowStatus.COMPLETE
            instance.data = {"written": instance.id}
            try:
                await persistence.persist_workflow(
                    instance, changed_pointers={parent.id}, release=leases[instance.id]
                )
            except (ConcurrencyError, LockNotHeldError) as exc:
                outcomes[instance.id] = exc
            else:
                outcomes[instance.id] = None

        with psycopg.connect(db_url.split("?")[0], autocommit=True) as listener:
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(persistence.channel)))
            merged = batcher.merged
            async with anyio.create_task_group() as tg:
                # The refused ones among the others (the first two writes go out alone).
                for instance in [*instances[3:20], lost, stale, fenced, *instances[20:]]:
                    tg.start_soon(last_write, instance)
            assert batcher.merged > merged
            woken = {
                n.payload
                for n in listener.notifies(timeout=5, stop_after=CONCURRENT - 3)
                if n.channel == persistence.channel
            }

        assert isinstance(outcomes.pop(lost.id), LockNotHeldError)
        assert isinstance(outcomes.pop(fenced.id), StaleLeaseError)
        stale_error = outcomes.pop(stale.id)
        assert type(stale_error) is ConcurrencyError
        for refused in (lost, stale, fenced):
            assert await persistence.get_workflow(refused.id) == before[refused.id]
        # The lost lease is still the thief's, the refused writers' leases still theirs.
        holder = await lock.holder(lost.id)
        assert holder is not None
        assert holder.owner == "thief"
        await lock.renew(leases[stale.id], ttl=30)
        await lock.renew(leases[fenced.id], ttl=30)
        # The others: written with their own rows, their keys freed and their waiters woken.
        assert set(outcomes.values()) == {None}
        written = instances[3:]
        assert woken == {lock_topic(instance.id) for instance in written}
        for instance in written:
            stored = await persistence.get_workflow(instance.id)
            assert stored.revision == instance.revision == 2
            assert stored.status == WorkflowStatus.COMPLETE
            assert stored.data == {"written": instance.id}
            assert stored.pointers == instance.pointers
            assert await lock.holder(instance.id) is None
