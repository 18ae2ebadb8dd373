"""A pass never writes under a lease that may have lapsed while its event loop was blocked,
and every write under a lease carries its fencing token."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pytest
from wfe_host_tests_polling import until

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence
from wfe_host import HostOptions, WorkflowHost

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from wfe_core import StepContext
    from wfe_core.models import Event, EventSubscription, ExecutionError, WorkflowInstance
    from wfe_core.providers import Lease, PointerWrite

pytestmark = pytest.mark.anyio


class FenceLog(MemoryPersistence):
    """Memory persistence noting the fence of every write (the store is real; it only
    records what it was given)."""

    def __init__(self) -> None:
        super().__init__()
        self.fences: list[int | None] = []

    async def persist_workflow(
        self,
        instance: WorkflowInstance,
        *,
        subscriptions: Iterable[EventSubscription] = (),
        errors: Iterable[ExecutionError] = (),
        events: Iterable[Event] = (),
        changed_pointers: Collection[str] | None = None,
        fence: int | None = None,
        pointer_write: PointerWrite | None = None,
    ) -> None:
        self.fences.append(fence)
        await super().persist_workflow(
            instance,
            subscriptions=subscriptions,
            errors=errors,
            events=events,
            changed_pointers=changed_pointers,
            fence=fence,
            pointer_write=pointer_write,
        )


def _blocking_step(runs: list[str], seconds: float) -> Any:
    def block(ctx: StepContext) -> None:
        runs.append("run")
        if len(runs) == 1:
            time.sleep(seconds)  # blocks the event loop: no renewal meanwhile

    return block


async def test_every_write_under_a_lease_carries_its_token() -> None:
    """Passes, event deliveries and suspend/resume/terminate all write with a fence."""
    persistence = FenceLog()

    async def noop(ctx: StepContext) -> None:
        pass

    definition = (
        WorkflowBuilder(dict)
        .start_with(noop)
        .wait_for("go", lambda data: data["key"])
        .then(noop)
        .build("fenced")
    )
    async with WorkflowHost(persistence=persistence) as host:
        host.register(definition)
        first = await host.start_workflow("fenced", data={"key": "k"})
        second = await host.start_workflow("fenced", data={"key": "k"})
        await host.publish_event("go", "k", None)
        for workflow_id in (first, second):
            finished = await host.wait_for_workflow(workflow_id, timeout=10)
            assert finished.status == WorkflowStatus.COMPLETE
        third = await host.start_workflow("fenced", data={"key": "never"})
        assert await host.suspend_workflow(third)
        assert await host.resume_workflow(third)
        assert await host.terminate_workflow(third)
    # Every pass, delivery and control write: several each, none without a fence.
    assert len(persistence.fences) >= 8
    assert None not in persistence.fences


async def test_a_loop_blocked_for_less_than_the_lease_keeps_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The renewer could not run while the step blocked the loop for most of the lease; the
    lease is renewed once the loop runs again (before the write at the latest), so the pass
    goes on and the step ran once."""
    runs: list[str] = []
    caplog.set_level(logging.INFO, logger="wfe_host.passes")
    async with WorkflowHost(options=HostOptions(lease_seconds=2.0)) as host:
        host.register(WorkflowBuilder(dict).start_with(_blocking_step(runs, 1.3)).build("b"))
        workflow_id = await host.start_workflow("b")
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert runs == ["run"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_loop_blocked_past_the_lease_takes_it_again_when_nobody_else_did(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The lease lapsed while the step blocked the loop, but no other worker took the
    instance: the pass takes the lease again (a newer token) and writes; the step ran once."""
    runs: list[str] = []
    caplog.set_level(logging.INFO, logger="wfe_host.passes")
    async with WorkflowHost(options=HostOptions(lease_seconds=0.5)) as host:
        host.register(WorkflowBuilder(dict).start_with(_blocking_step(runs, 1.0)).build("b"))
        workflow_id = await host.start_workflow("b")
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert runs == ["run"]
    assert any("took a lapsed lease again" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_loop_blocked_past_the_lease_another_worker_took_writes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The lease lapsed while the step blocked the loop, and another worker took the
    instance: the pass writes nothing (one warning, no traceback), and once that worker is
    done the instance runs again; the step's transition is stored once."""
    runs: list[str] = []
    taken: list[Lease] = []
    hosts: list[WorkflowHost] = []
    revisions: list[int] = []

    async def block_then_lose(ctx: StepContext) -> None:
        runs.append("run")
        if len(runs) == 1:
            revisions.append(ctx.workflow.revision)
            time.sleep(1.0)  # noqa: ASYNC251 - blocks the event loop past the lease on purpose
            # Another worker takes the lapsed lease before this pass writes.
            lease = await hosts[0].lock.acquire(ctx.workflow.id, owner="another", ttl=30)
            assert lease is not None
            taken.append(lease)

    caplog.set_level(logging.INFO, logger="wfe_host.passes")
    async with WorkflowHost(options=HostOptions(lease_seconds=0.5)) as host:
        hosts.append(host)
        host.register(WorkflowBuilder(dict).start_with(block_then_lose).build("b"))
        workflow_id = await host.start_workflow("b")

        def warned() -> bool:
            return any(r.levelno >= logging.WARNING for r in caplog.records)

        await until(warned)
        stored = await host.persistence.get_workflow(workflow_id)
        assert [stored.revision] == revisions  # the pass wrote nothing after the step
        await host.lock.release(taken[0])
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert runs == ["run", "run"]
    assert [p.step_id for p in instance.pointers] == [0]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "another worker holds it" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
