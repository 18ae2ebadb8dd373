"""Notifications stored in the write that causes them (the transactional outbox): a child's
notification of its parent, and a terminated parent's termination of its children, survive
the host stopping dead right after that write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence
from wfe_core.models import Event, PointerStatus
from wfe_core.primitives import BEGINNING_OF_TIME, CHILD_FINISHED_EVENT, TERMINATE_CHILD_EVENT
from wfe_host import WorkflowHost

if TYPE_CHECKING:
    from wfe_core.models import WorkflowInstance


class RecordingPersistence(MemoryPersistence):
    """The memory persistence, noting which events came with which write, and able to stop
    its host dead right after the write that finishes a chosen workflow."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, WorkflowStatus, list[Event]]] = []
        self.created_events: list[Event] = []
        self.die_after_finishing: str | None = None
        self.died = anyio.Event()

    async def persist_workflow(self, instance: WorkflowInstance, **kwargs: Any) -> None:
        await super().persist_workflow(instance, **kwargs)
        self.writes.append((instance.id, instance.status, list(kwargs.get("events", ()))))
        if instance.id == self.die_after_finishing and instance.status.is_finished:
            self.died.set()
            await anyio.sleep_forever()

    async def create_event(self, event: Event) -> None:
        self.created_events.append(event)
        await super().create_event(event)


def _family(host: WorkflowHost) -> tuple[str, str]:
    """Register parent -> child -> grandchild, each waiting; returns (parent, child) ids."""
    grandchild = WorkflowBuilder().wait_for("never", key="k").build("grandchild")
    child = WorkflowBuilder().sub_workflow("grandchild").build("child")
    parent = WorkflowBuilder().sub_workflow("child").build("parent")
    for definition in (grandchild, child, parent):
        host.register(definition)
    return "parent", "child"


async def _waited_child(host: WorkflowHost, parent_id: str) -> str:
    with anyio.fail_after(10):
        while True:
            for pointer in (await host.get_workflow(parent_id)).pointers:
                if (
                    pointer.status == PointerStatus.WAITING_FOR_EVENT
                    and pointer.event_name == CHILD_FINISHED_EVENT
                    and pointer.event_key
                ):
                    return pointer.event_key
            await anyio.sleep(0.01)


async def _until_waiting(host: WorkflowHost, workflow_id: str) -> None:
    with anyio.fail_after(10):
        while not any(  # noqa: ASYNC110 - no lifecycle event marks a waiting step
            p.status == PointerStatus.WAITING_FOR_EVENT
            for p in (await host.get_workflow(workflow_id)).pointers
        ):
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_terminating_a_child_stores_its_notification_in_the_same_write() -> None:
    persistence = RecordingPersistence()
    async with WorkflowHost(persistence=persistence) as host:
        _family(host)
        parent_id = await host.start_workflow("parent")
        child_id = await _waited_child(host, parent_id)
        grandchild_id = await _waited_child(host, child_id)
        await _until_waiting(host, grandchild_id)

        assert await host.terminate_workflow(child_id)
        parent = await host.wait_for_workflow(parent_id, timeout=10)
        grandchild = await host.wait_for_workflow(grandchild_id, timeout=10)

    assert parent.status == WorkflowStatus.FAILED
    assert grandchild.status == WorkflowStatus.TERMINATED
    # The write that terminated the child carried both its parent's notification and the
    # termination of its own child; nothing was published on its own afterwards.
    (terminating,) = [w for w in persistence.writes if w[0] == child_id and w[1].is_finished]
    assert terminating[1] == WorkflowStatus.TERMINATED
    assert sorted((e.name, e.key) for e in terminating[2]) == sorted(
        [(CHILD_FINISHED_EVENT, child_id), (TERMINATE_CHILD_EVENT, grandchild_id)]
    )
    (grandchild_write,) = [
        w for w in persistence.writes if w[0] == grandchild_id and w[1].is_finished
    ]
    assert [(e.name, e.key) for e in grandchild_write[2]] == [(CHILD_FINISHED_EVENT, grandchild_id)]
    assert persistence.created_events == []
    # Every stored event was delivered (processed).
    for name, key in [(CHILD_FINISHED_EVENT, child_id), (TERMINATE_CHILD_EVENT, grandchild_id)]:
        (event_id,) = await persistence.get_events(name, key, BEGINNING_OF_TIME)
        assert (await persistence.get_event(event_id)).is_processed


@pytest.mark.anyio
async def test_children_of_a_parent_terminated_just_before_a_crash_end_after_the_restart() -> None:
    persistence = RecordingPersistence()
    async with WorkflowHost(persistence=persistence) as host:
        _family(host)
        parent_id = await host.start_workflow("parent")
        child_id = await _waited_child(host, parent_id)
        grandchild_id = await _waited_child(host, child_id)
        await _until_waiting(host, grandchild_id)
        # The host stops dead right after the parent's terminating write.
        persistence.die_after_finishing = parent_id
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.terminate_workflow, parent_id)
            with anyio.fail_after(10):
                await persistence.died.wait()
            tg.cancel_scope.cancel()
    persistence.die_after_finishing = None
    assert (await persistence.get_workflow(parent_id)).status == WorkflowStatus.TERMINATED
    assert (await persistence.get_workflow(child_id)).status == WorkflowStatus.RUNNABLE

    # A new host (new queue and lock, nothing queued) on the same store ends the children.
    async with WorkflowHost(persistence=persistence) as restarted:
        _family(restarted)
        child = await restarted.wait_for_workflow(child_id, timeout=10)
        grandchild = await restarted.wait_for_workflow(grandchild_id, timeout=10)
    assert child.status == WorkflowStatus.TERMINATED
    assert grandchild.status == WorkflowStatus.TERMINATED
    assert (await persistence.get_workflow(parent_id)).status == WorkflowStatus.TERMINATED
