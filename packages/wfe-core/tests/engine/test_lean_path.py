"""The executor's lean path for sequences: one write per step, each step's result and its
successor's start stored before the successor runs."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

from wfe_core import ExecutionResult, StepContext, WorkflowBuilder
from wfe_core.models import LifecycleEventType, PointerStatus, WorkflowStatus

if TYPE_CHECKING:
    from wfe_core.testing.harness import EngineHarness

pytestmark = pytest.mark.anyio


def _count_writes(engine: EngineHarness) -> list[int]:
    writes = [0]
    persist = engine.persistence.persist_workflow

    async def counted(*args: Any, **kwargs: Any) -> None:
        writes[0] += 1
        await persist(*args, **kwargs)

    engine.persistence.persist_workflow = counted  # type: ignore[method-assign]
    return writes


async def test_each_step_starts_after_its_predecessor_is_stored(engine: EngineHarness) -> None:
    seen: list[list[str]] = []

    async def check(ctx: StepContext) -> ExecutionResult:
        stored = await engine.persistence.get_workflow(ctx.workflow.id)
        seen.append([str(p.status) for p in stored.pointers])
        return ExecutionResult.next()

    builder = WorkflowBuilder().start_with(check)
    for _ in range(4):
        builder = builder.then(check)
    definition = builder.build("lean")
    writes = _count_writes(engine)
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    # Every step runs once its predecessor's completion and its own start are stored: one
    # write per step, and the last one's result.
    for index, statuses in enumerate(seen):
        assert statuses == ["complete"] * index + ["running"]
    assert writes[0] == 6
    assert [p.attempt for p in instance.pointers] == [1] * 5
    assert all(p.start_time is not None for p in instance.pointers)
    types = [e.type for e in engine.events]
    assert types.count(LifecycleEventType.STEP_STARTED) == 5
    assert types.count(LifecycleEventType.STEP_COMPLETED) == 5
    assert types[-1] == LifecycleEventType.WORKFLOW_COMPLETED


async def test_a_step_cut_short_runs_again_with_the_next_attempt(engine: EngineHarness) -> None:
    runs: list[int] = []

    async def slow(ctx: StepContext) -> ExecutionResult:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            await anyio.sleep(10)
        return ExecutionResult.next()

    definition = WorkflowBuilder().start_with(slow).then(lambda ctx: None).build("crash")
    workflow_id = (await engine.start(definition)).id
    instance = await engine.persistence.get_workflow(workflow_id)
    with anyio.move_on_after(0.2):  # a crash: the pass stops mid-step
        await engine.executor.run_pass(instance, definition)
    stored = await engine.persistence.get_workflow(workflow_id)
    assert stored.status == WorkflowStatus.RUNNABLE
    assert stored.next_execution is not None
    await engine.executor.run_pass(stored, definition)
    final = await engine.persistence.get_workflow(workflow_id)
    assert final.status == WorkflowStatus.COMPLETE
    assert runs == [1, 2]
    assert [p.status for p in final.pointers] == [PointerStatus.COMPLETE] * 2


async def test_parallel_branches_leave_the_lean_path(engine: EngineHarness) -> None:
    order: list[str] = []

    def note(name: str) -> Any:
        async def body(ctx: StepContext) -> None:
            order.append(f"{name}{ctx.item}")
            await anyio.sleep(0.01)

        return body

    definition = (
        WorkflowBuilder()
        .for_each(lambda data: range(3), lambda b: b.start_with(note("a")).then(note("b")))
        .then(note("c"))
        .build("branches")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert sorted(order[:3]) == ["a0", "a1", "a2"]
    assert sorted(order[3:6]) == ["b0", "b1", "b2"]
    assert order[6] == "cNone"


async def test_a_long_run_of_steps_that_never_wait_lets_other_tasks_run(
    engine: EngineHarness,
) -> None:
    """Neither these steps nor the in-memory store yield; the pass still lets the host's other
    tasks run every few milliseconds, not only when it ends."""

    ticks = 0
    # How many times the other task had run when each step ran.
    seen: list[int] = []

    def busy(ctx: StepContext) -> ExecutionResult:
        seen.append(ticks)
        time.sleep(0.0005)  # blocks the event loop, as CPU-bound work would
        return ExecutionResult.next()

    builder = WorkflowBuilder().start_with(busy)
    for _ in range(599):
        builder = builder.then(busy)
    definition = builder.build("long")
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await anyio.lowlevel.checkpoint()
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        instance = await engine.run(definition)
        done = True
    assert instance.status == WorkflowStatus.COMPLETE
    assert len(seen) == 600
    # The pass blocks for 0.3 s or more in all; the other task runs every few milliseconds
    # (counted in steps of 0.5 ms, not in wall-clock time, which a loaded machine stretches).
    longest = max(sum(1 for _ in run) for _, run in itertools.groupby(seen))
    assert longest <= 40, longest


async def test_a_loop_round_is_one_write_and_stores_its_container_with_it(
    engine: EngineHarness,
) -> None:
    """A ``while_do`` round: the container's run (a primitive) is stored with the body's
    start, so each round is one write, and a body step sees its container stored running."""
    seen: list[tuple[str, int]] = []

    async def body(ctx: StepContext) -> ExecutionResult:
        stored = await engine.persistence.get_workflow(ctx.workflow.id)
        loop = stored.pointers[0]
        seen.append((str(loop.status), len(loop.children)))
        ctx.data["i"] += 1
        return ExecutionResult.next()

    definition = (
        WorkflowBuilder()
        .while_do(lambda data: data["i"] < 20, lambda b: b.start_with(body))
        .build("loop-writes")
    )
    writes = _count_writes(engine)
    instance = await engine.run(definition, {"i": 0})
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["i"] == 20
    # Each body step starts once its container's round (its own pointer) is stored.
    assert seen == [("running", n) for n in range(1, 21)]
    assert writes[0] == 21  # one per round, and the last one's result with the loop's end
    assert instance.pointers[0].children == [p.id for p in instance.pointers[1:]]


class _Recorder:
    """A step middleware noting the steps it wraps; ``inline_safe`` as given."""

    def __init__(self, *, inline_safe: bool) -> None:
        self.inline_safe = inline_safe
        self.seen: list[str] = []

    async def __call__(self, ctx: StepContext, call_next: Any) -> ExecutionResult:
        self.seen.append(ctx.step.body.__name__ if isinstance(ctx.step.body, type) else "fn")
        result: ExecutionResult = await call_next()
        return result


@pytest.mark.parametrize(("inline_safe", "expected_writes"), [(True, 11), (False, 22)])
async def test_loop_rounds_through_step_middleware(
    engine: EngineHarness, inline_safe: bool, expected_writes: int
) -> None:
    """A middleware marked inline-safe (an observer such as the host's telemetry) keeps a
    loop's round at one write and still wraps the container's runs; any other middleware
    sees the container's start stored like every step's (two writes a round, and the
    last check's)."""
    from wfe_core import WorkflowExecutor

    recorder = _Recorder(inline_safe=inline_safe)
    engine.executor = WorkflowExecutor(engine, step_middleware=[recorder], clock=engine.clock)

    def body(ctx: StepContext) -> None:
        ctx.data["i"] += 1

    definition = (
        WorkflowBuilder()
        .while_do(lambda data: data["i"] < 10, lambda b: b.start_with(body))
        .build("loop-middleware")
    )
    writes = _count_writes(engine)
    instance = await engine.run(definition, {"i": 0})
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["i"] == 10
    assert writes[0] == expected_writes
    # Either way the middleware wraps every run: 11 of the loop (10 rounds and the last
    # check) and 10 of its body.
    assert recorder.seen.count("While") == 11
    assert len(recorder.seen) == 21
