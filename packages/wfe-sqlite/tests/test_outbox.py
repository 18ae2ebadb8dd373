"""A finished child's notification of its parent survives the death of the host between the
child's final write and the queueing of the notification (the transactional outbox)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.models import Event, PointerStatus, WorkflowDefinition
from wfe_core.primitives import BEGINNING_OF_TIME, CHILD_FINISHED_EVENT
from wfe_core.spi import utcnow
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from wfe_core.models import WorkflowInstance

wfe_host = pytest.importorskip("wfe_host", reason="the outbox tests need wfe-host")


class DiesAfterFinishingAChild(SqlitePersistence):
    """The real SQLite persistence in a host that stops dead right after the write that
    finishes a child: nothing the host would do next (queue the notification, tell waiters)
    happens, as when the process is killed there."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.died = anyio.Event()

    async def persist_workflow(self, instance: WorkflowInstance, **kwargs: Any) -> None:
        await super().persist_workflow(instance, **kwargs)
        if instance.status.is_finished and instance.parent_workflow_id is not None:
            self.died.set()
            await anyio.sleep_forever()


@attrs.define
class Numbers:
    numbers: list[int] = attrs.Factory(list)
    total: int = 0


def _definitions() -> tuple[WorkflowDefinition, WorkflowDefinition]:
    def add(ctx: Any) -> None:
        ctx.data.total = sum(ctx.data.numbers)

    child = WorkflowBuilder(Numbers).delay(lambda _: timedelta(milliseconds=200)).then(add)
    parent = (
        WorkflowBuilder(Numbers)
        .sub_workflow(
            "outbox-child",
            inputs=lambda data: Numbers(numbers=list(data.numbers)),
            outputs={"total": "total"},
        )
        .then(lambda ctx: None)
    )
    return child.build("outbox-child"), parent.build("outbox-parent")


def _host(url: str, persistence: SqlitePersistence | None = None) -> Any:
    return wfe_host.WorkflowHost(
        persistence=persistence or SqlitePersistence(url),
        lock=SqliteLock(url),
        queue=SqliteQueue(url),
        options=wfe_host.HostOptions(lease_seconds=2.0),
    )


async def _waiting_child(host: Any, parent_id: str) -> str:
    """The id of the child the parent's sub-workflow step waits for."""
    with anyio.fail_after(30):
        while True:
            parent: WorkflowInstance = await host.get_workflow(parent_id)
            for pointer in parent.pointers:
                if (
                    pointer.status == PointerStatus.WAITING_FOR_EVENT
                    and pointer.event_name == CHILD_FINISHED_EVENT
                ):
                    assert pointer.event_key is not None
                    return pointer.event_key
            await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_a_child_finished_before_a_crash_wakes_its_parent_after_the_restart(
    db_url: str,
) -> None:
    child, parent = _definitions()
    dying = DiesAfterFinishingAChild(db_url)
    crashing = _host(db_url, dying)
    async with crashing:
        crashing.register(child)
        crashing.register(parent)
        parent_id = await crashing.start_workflow("outbox-parent", Numbers(numbers=[1, 2, 3]))
        child_id = await _waiting_child(crashing, parent_id)
        with anyio.fail_after(30):
            await dying.died.wait()
    # Leaving the host cancelled everything after the child's final write.

    # On disk: the child's final state and its notification, stored together, unprocessed.
    async with SqlitePersistence(db_url, share_connections=False) as persistence:
        notifications = list(
            await persistence.get_events(CHILD_FINISHED_EVENT, child_id, BEGINNING_OF_TIME)
        )
        assert len(notifications) == 1
        assert notifications[0] in await persistence.get_runnable_events(utcnow())
        event = await persistence.get_event(notifications[0])
        assert event.data == {"status": "complete", "error": None}

    # A new host on the same file, with nothing queued for the parent, finishes it.
    async with _host(db_url) as restarted:
        restarted.register(child)
        restarted.register(parent)
        done = await restarted.wait_for_workflow(parent_id, timeout=30)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data.total == 6
        # Marked processed once its delivery is stored, which may be just after the parent ends.
        with anyio.fail_after(10):
            while not (await restarted.persistence.get_event(notifications[0])).is_processed:  # noqa: ASYNC110
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_running_host_recovers_a_notification_another_process_left_unqueued(
    db_url: str,
) -> None:
    child = WorkflowBuilder(Numbers).wait_for("never", key="k").build("outbox-child")
    parent = WorkflowBuilder(Numbers).sub_workflow("outbox-child").build("outbox-parent")
    host = _host(db_url)
    # Its recovery wake-up sweeps stored unprocessed events; short here, 30 s by default.
    host.scheduler.recovery_seconds = 0.3
    async with host:
        host.register(child)
        host.register(parent)
        parent_id = await host.start_workflow("outbox-parent")
        child_id = await _waiting_child(host, parent_id)
        with anyio.fail_after(30):
            while not any(  # noqa: ASYNC110 - no lifecycle event marks a waiting step
                p.status == PointerStatus.WAITING_FOR_EVENT
                for p in (await host.get_workflow(child_id)).pointers
            ):
                await anyio.sleep(0.02)

        # Another process on the same file finishes the child with its final write (the
        # notification stored in it, built as a host builds it) and dies before queueing.
        async with SqlitePersistence(db_url, share_connections=False) as other:
            finished = await other.get_workflow(child_id)
            now = utcnow()
            for pointer in finished.pointers:
                pointer.active = False
                pointer.status = PointerStatus.COMPLETE
                pointer.end_time = now
            finished.status = WorkflowStatus.COMPLETE
            finished.complete_time = now
            finished.next_execution = None
            # The parent's notification, as a host stores it with a child's final write.
            notification = Event(
                name=CHILD_FINISHED_EVENT, key=child_id, data={"status": "complete", "error": None}
            )
            await other.persist_workflow(finished, events=[notification])

        done = await host.wait_for_workflow(parent_id, timeout=30)
        assert done.status == WorkflowStatus.COMPLETE
