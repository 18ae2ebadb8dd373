"""An event's delivery on PostgreSQL, where the publishing host takes the workflow's lease
and reads the instance while the event is being stored: nothing changes before the event is
stored, a failed store lets go of the lease, and the workflow goes on once it is stored."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus
from wfe_host import WorkflowHost
from wfe_postgres.lock import PostgresLock
from wfe_postgres.persistence import PostgresPersistence

pytestmark = pytest.mark.anyio


@attrs.define
class Counter:
    count: int = 0


def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


class GatedEvents(PostgresPersistence):
    """Stores an event only once ``gate`` is set; refuses it when ``refuse`` is."""

    gate: anyio.Event
    refuse = False

    async def create_event(self, event: Any) -> None:
        await self.gate.wait()
        if self.refuse:
            raise RuntimeError("disk full")
        await super().create_event(event)


async def _waiting(host: WorkflowHost) -> str:
    host.register(WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated"))
    workflow_id = await host.start_workflow("gated")
    deadline = anyio.current_time() + 10
    while not any(
        str(p.status) == "waiting_for_event"
        for p in (await host.get_workflow(workflow_id)).pointers
    ):
        assert anyio.current_time() < deadline, "the workflow never waited for its event"
        await anyio.sleep(0.01)
    # Its pass has stored the wait; it may not have let go of the lease yet, nor ended (its
    # last write gives the lease back before the pass ends, and a delivery leaves a workflow
    # whose pass still runs here to the usual path).
    while await host.lock.holder(workflow_id) is not None or host.running_workflows:
        assert anyio.current_time() < deadline, "the pass never let go of the workflow"
        await anyio.sleep(0.01)
    return workflow_id


async def test_the_workflow_is_held_but_unchanged_until_its_event_is_stored(db_url: str) -> None:
    persistence = GatedEvents(db_url)
    persistence.gate = anyio.Event()
    async with WorkflowHost(persistence, PostgresLock(db_url)) as host:
        workflow_id = await _waiting(host)
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.publish_event, "go", "k")
            await anyio.sleep(0.3)
            # Held by this host's delivery meanwhile: no other worker runs it.
            holder = await host.lock.holder(workflow_id)
            assert holder is not None
            instance = await host.get_workflow(workflow_id)
            assert instance.status == WorkflowStatus.RUNNABLE
            assert not any(p.event_published for p in instance.pointers)
            persistence.gate.set()
        done = await host.wait_for_workflow(workflow_id, timeout=10)
        assert (done.status, done.data.count) == (WorkflowStatus.COMPLETE, 1)


async def test_a_failed_store_lets_go_of_the_workflow(db_url: str) -> None:
    persistence = GatedEvents(db_url)
    persistence.gate = anyio.Event()
    persistence.refuse = True
    async with WorkflowHost(persistence, PostgresLock(db_url)) as host:
        workflow_id = await _waiting(host)
        persistence.gate.set()
        with pytest.raises(RuntimeError, match="disk full"):
            await host.publish_event("go", "k")
        deadline = anyio.current_time() + 5
        while await host.lock.holder(workflow_id) is not None:
            assert anyio.current_time() < deadline, "the delivery kept the workflow's lease"
            await anyio.sleep(0.01)
        instance = await host.get_workflow(workflow_id)
        assert instance.status == WorkflowStatus.RUNNABLE
        assert not any(p.event_published for p in instance.pointers)
