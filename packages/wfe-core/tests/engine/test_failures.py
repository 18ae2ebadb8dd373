"""Error handling in the executor: cancellation of siblings, compensation details, fallbacks."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import ErrorBehavior, ExecutionResult, StepBody, StepContext, WorkflowBuilder
from wfe_core.models import PointerStatus, WorkflowStatus

if TYPE_CHECKING:
    from wfe_core.testing.harness import EngineHarness

pytestmark = pytest.mark.anyio


def log(label: str) -> Any:
    def step(ctx: StepContext) -> None:
        ctx.data.setdefault("log", []).append(label)

    return step


def fail(ctx: StepContext) -> None:
    raise RuntimeError("broken")


async def long_step(ctx: StepContext) -> None:
    await anyio.sleep(30)
    ctx.data.setdefault("log", []).append("long finished")


async def test_a_failure_cancels_running_siblings_at_once(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(long_step)).branch(
                lambda b: b.start_with(fail)
            )
        )
        .build("fail-fast")
    )
    started = time.monotonic()
    instance = await engine.run(definition)
    assert time.monotonic() - started < 10
    assert instance.status == WorkflowStatus.FAILED
    assert "long finished" not in instance.data.get("log", [])
    statuses = sorted(p.status for p in instance.pointers)
    assert PointerStatus.CANCELLED in statuses
    assert PointerStatus.FAILED in statuses
    assert all(not p.active for p in instance.pointers)


async def test_end_workflow_cancels_other_branches(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .parallel(
            lambda p: p.branch(lambda b: b.delay(timedelta(hours=1)).then(log("never"))).branch(
                lambda b: b.start_with(log("ending")).end_workflow()
            )
        )
        .then(log("after parallel"))
        .build("end-early")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["log"] == ["ending"]
    assert instance.next_execution is None


async def test_saga_cancels_waiting_branches_and_undoes_completed_ones(
    engine: EngineHarness,
) -> None:
    definition = (
        WorkflowBuilder()
        .saga(
            lambda b: (
                b.start_with(log("a"))
                .compensate_with(log("undo a"))
                .parallel(
                    lambda p: p.branch(
                        lambda x: x.delay(timedelta(hours=1)).then(log("late"))
                    ).branch(
                        lambda x: (
                            x.start_with(log("b"))
                            .compensate_with(log("undo b"))
                            .then(fail)
                            .compensate_with(log("undo failed step"))
                        )
                    )
                )
            )
        )
        .then(log("after"))
        .build("saga-parallel")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    # The failed step's own compensation first, then completed steps latest first.
    assert instance.data["log"] == ["a", "b", "undo failed step", "undo b", "undo a", "after"]
    assert "late" not in instance.data["log"]
    (saga,) = [p for p in instance.pointers if p.step_name == "Saga"]
    # Its steps were undone; it has no compensate_with of its own, so it is not "compensated".
    assert saga.status == PointerStatus.FAILED
    assert saga.error == "RuntimeError: broken"


async def test_failing_compensation_fails_the_workflow(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .saga(lambda b: b.start_with(log("a")).compensate_with(fail).then(fail))
        .then(log("after"))
        .build("bad-compensation")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.FAILED
    assert instance.data["log"] == ["a"]


async def test_retry_exhausted_in_saga_compensates(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .saga(
            lambda b: (
                b.start_with(log("a"))
                .compensate_with(log("undo a"))
                .then(fail)
                .on_error(ErrorBehavior.retry(interval=0.01, max_retries=2))
            )
        )
        .build("retry-then-compensate")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["log"] == ["a", "undo a"]
    errors = await engine.persistence.get_errors(instance.id)
    assert len(errors) == 3  # the first run and two retries


async def test_default_retry_falls_back_to_failing(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .start_with(fail)
        .build("default-retry", default_error_behavior=ErrorBehavior.retry(0.01, max_retries=1))
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.FAILED
    assert len(await engine.persistence.get_errors(instance.id)) == 2


async def test_persist_runs_the_step_again_with_its_state(engine: EngineHarness) -> None:
    class Countdown(StepBody):
        async def run(self, ctx: StepContext) -> ExecutionResult:
            left = 3 if ctx.persistence_data is None else ctx.persistence_data["left"]
            ctx.data.setdefault("log", []).append(left)
            if left == 0:
                return ExecutionResult.next()
            return ExecutionResult.persist({"left": left - 1})

    instance = await engine.run(WorkflowBuilder().start_with(Countdown).build("countdown"))
    assert instance.data["log"] == [3, 2, 1, 0]


async def test_a_step_returning_garbage_fails(engine: EngineHarness) -> None:
    class Bad(StepBody):
        async def run(self, ctx: StepContext) -> ExecutionResult:
            return "next"  # type: ignore[return-value]

    instance = await engine.run(WorkflowBuilder().start_with(Bad).build("garbage"))
    assert instance.status == WorkflowStatus.FAILED
    [pointer] = instance.pointers
    assert "not an ExecutionResult" in (pointer.error or "")


async def test_suspend_behavior_keeps_the_step_pending(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder().start_with(fail).on_error(ErrorBehavior.suspend()).build("suspends")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.SUSPENDED
    [pointer] = instance.pointers
    assert (pointer.status, pointer.active) == (PointerStatus.PENDING, True)


async def test_a_top_level_saga_that_compensates_on_error_undoes_the_workflow(
    engine: EngineHarness,
) -> None:
    definition = (
        WorkflowBuilder()
        .start_with(log("a"))
        .compensate_with(log("undo a"))
        .saga(lambda b: b.start_with(log("b")).compensate_with(log("undo b")).then(fail))
        .on_error(ErrorBehavior.compensate())
        .compensate_with(log("undo saga"))
        .then(log("never"))
        .build("saga-compensates-all")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.FAILED
    assert instance.data["log"] == ["a", "b", "undo b", "undo saga", "undo a"]


async def test_a_failing_step_of_a_multi_step_compensation_fails_the_workflow(
    engine: EngineHarness,
) -> None:
    definition = (
        WorkflowBuilder()
        .saga(
            lambda b: (
                b.start_with(log("a"))
                .compensate_with_sequence(lambda c: c.start_with(log("undo a")).then(fail))
                .then(log("b"))
                .compensate_with(log("undo b"))
                .then(fail)
            )
        )
        .then(log("after"))
        .build("bad-multi-step-compensation")
    )
    instance = await engine.run(definition)
    # Not compensated again (that could loop): the workflow fails where the undo failed.
    assert instance.status == WorkflowStatus.FAILED
    assert instance.data["log"] == ["a", "b", "undo b", "undo a"]
