"""A new workflow's first pass, run at once by the host that starts it, creates the instance
with its first write: start and the first step's start are one write, the caller still gets
the id before any step body runs, and a start the store refuses leaves nothing running."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import LifecycleEventType, StepContext, WorkflowBuilder, WorkflowStatus
from wfe_core.errors import ConcurrencyError
from wfe_core.memory.persistence import MemoryPersistence
from wfe_host import HostOptions, WorkflowHost

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def _bump(ctx: StepContext) -> None:
    ctx.data["count"] = ctx.data.get("count", 0) + 1


def _three_steps(definition_id: str = "three") -> Any:
    return WorkflowBuilder(dict).start_with(_bump).then(_bump).then(_bump).build(definition_id)


class _CountedWrites(MemoryPersistence):
    """Memory persistence noting each instance write: ``("create", pointers)`` or
    ``("persist", pointers)`` with the number of pointers stored."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []

    async def create_workflow(self, instance: Any) -> None:
        await super().create_workflow(instance)
        self.writes.append(("create", len(instance.pointers)))

    async def persist_workflow(self, instance: Any, **kwargs: Any) -> None:
        await super().persist_workflow(instance, **kwargs)
        self.writes.append(("persist", len(instance.pointers)))


async def test_start_and_the_first_steps_start_are_one_write() -> None:
    persistence = _CountedWrites()
    async with WorkflowHost(persistence=persistence) as host:
        host.register(_three_steps())
        workflow_id = await host.start_workflow("three", {})
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data == {"count": 3}
    # The create holds the first step's start; then one write per step's end.
    assert persistence.writes == [("create", 1), ("persist", 2), ("persist", 3), ("persist", 3)]


async def test_a_host_without_a_free_slot_creates_first_then_runs_it() -> None:
    persistence = _CountedWrites()
    holding_started, release = anyio.Event(), anyio.Event()

    async def hold(ctx: StepContext) -> None:
        holding_started.set()
        await release.wait()

    holding = WorkflowBuilder(dict).start_with(hold).build("hold")
    options = HostOptions(concurrency=1)
    async with WorkflowHost(persistence=persistence, options=options) as host:
        host.register(holding)
        host.register(_three_steps())
        held = await host.start_workflow("hold", {})
        with anyio.fail_after(10):
            await holding_started.wait()
        # The one slot is taken: the instance is stored before anything runs it.
        workflow_id = await host.start_workflow("three", {})
        assert persistence.writes[-1] == ("create", 0)
        release.set()
        done = await host.wait_for_workflow(workflow_id, timeout=10)
        await host.wait_for_workflow(held, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data == {"count": 3}


async def test_the_caller_gets_the_id_before_the_first_step_runs() -> None:
    ran: list[str] = []

    def first(ctx: StepContext) -> None:
        ran.append(ctx.workflow.id)

    async with WorkflowHost() as host:
        host.register(WorkflowBuilder(dict).start_with(first).build("first"))
        workflow_id = await host.start_workflow("first", {})
        # Nothing awaited since start_workflow returned: the body has not run yet.
        assert ran == []
        stored = await host.get_workflow(workflow_id)
        assert stored.status == WorkflowStatus.RUNNABLE
        await host.wait_for_workflow(workflow_id, timeout=10)
    assert ran == [workflow_id]


async def test_started_is_announced_before_the_steps_events() -> None:
    async with WorkflowHost() as host:
        host.register(_three_steps())
        seen: list[LifecycleEventType] = []

        async def listen() -> None:
            async for event in host.lifecycle_events():
                seen.append(event.type)
                if event.type == LifecycleEventType.WORKFLOW_COMPLETED:
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await anyio.sleep(0.01)  # subscribed
            workflow_id = await host.start_workflow("three", {})
            await host.wait_for_workflow(workflow_id, timeout=10)
    assert seen[0] == LifecycleEventType.WORKFLOW_STARTED
    assert seen[-1] == LifecycleEventType.WORKFLOW_COMPLETED
    assert seen.count(LifecycleEventType.WORKFLOW_STARTED) == 1


async def test_an_id_already_stored_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    runs: list[str] = []

    def note(ctx: StepContext) -> None:
        runs.append(ctx.workflow.id)

    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    async with WorkflowHost.from_settings({"persistence": url}) as host:
        host.register(WorkflowBuilder(dict).start_with(note).build("note"))
        workflow_id = await host.start_workflow("note", {"first": True}, workflow_id="fixed")
        first = await host.wait_for_workflow(workflow_id, timeout=10)
        with pytest.raises(ConcurrencyError):
            await host.start_workflow("note", {"second": True}, workflow_id="fixed")
        await anyio.sleep(0.05)
        stored = await host.get_workflow("fixed")
        assert not host.passes.running
    assert runs == ["fixed"]
    assert stored.data == {"first": True}
    assert stored.revision == first.revision
