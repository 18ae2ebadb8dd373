"""Each built-in step on its own: what it returns on its first and later runs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import ExecutionResult, StepContext
from wfe_core.models import ExecutionPointer, StepDefinition, WorkflowDefinition, WorkflowInstance
from wfe_core.primitives import (
    TIMEOUT_OUTCOME,
    Decide,
    Delay,
    EndWorkflow,
    ForEach,
    Fork,
    If,
    InlineStep,
    Recur,
    Schedule,
    Sequence,
    WaitFor,
    When,
    While,
)

if TYPE_CHECKING:
    from wfe_core import StepBody

pytestmark = pytest.mark.anyio


def context(body: type[StepBody], *, state: Any = None, item: Any = None) -> StepContext:
    step = StepDefinition(0, body)
    pointer = ExecutionPointer(0, persistence_data=state, context_item=item)
    return StepContext(
        workflow=WorkflowInstance("d", 1, data={}),
        definition=WorkflowDefinition("d", 1, [step]),
        step=step,
        pointer=pointer,
        host=None,  # type: ignore[arg-type]
        cancellation=anyio.CancelScope(),
    )


async def run(body: StepBody, ctx: StepContext) -> ExecutionResult:
    return await body.run(ctx)


async def test_sequence_branches_once_then_goes_on() -> None:
    first = await run(Sequence(), context(Sequence, item="i"))
    assert first.branch_values == ("i",)
    assert (await run(Sequence(), context(Sequence, state=first.persistence_data))).proceed


@pytest.mark.parametrize("condition", [True, False])
async def test_if(condition: bool) -> None:
    body = If()
    body.condition = condition
    result = await run(body, context(If))
    assert (result.branch_values is not None) is condition
    assert result.proceed is not condition


async def test_while_counts_rounds_and_stops() -> None:
    body = While()
    body.condition = True
    result = await run(body, context(While, state={"rounds": 2}))
    assert result.persistence_data == {"rounds": 3}
    body.condition = False
    assert (await run(body, context(While, state={"rounds": 3}))).proceed


async def test_for_each_parallel_branches_all_items() -> None:
    body = ForEach()
    body.collection = [1, 2, 3]
    result = await run(body, context(ForEach))
    assert result.branch_values == (1, 2, 3)
    assert (await run(body, context(ForEach, state=result.persistence_data))).proceed


async def test_for_each_sequential_walks_items() -> None:
    body = ForEach()
    body.collection, body.parallel = ["a", "b"], False
    first = await run(body, context(ForEach))
    second = await run(body, context(ForEach, state=first.persistence_data))
    third = await run(body, context(ForEach, state=second.persistence_data))
    assert (first.branch_values, second.branch_values, third.proceed) == (("a",), ("b",), True)


async def test_decide_and_when() -> None:
    assert (await run(Decide(), context(Decide))).branch_values == (None,)
    when = When()
    when.value, when.case = "x", "x"
    assert (await run(when, context(When))).branch_values == (None,)
    when.case = "y"
    assert (await run(when, context(When))).proceed


async def test_delay_sleeps_once() -> None:
    body = Delay()
    body.period = 2
    first = await run(body, context(Delay))
    assert first.sleep_for == timedelta(seconds=2)
    assert (await run(body, context(Delay, state=first.persistence_data))).proceed
    body.period = timedelta(0)
    assert (await run(body, context(Delay))).proceed


async def test_schedule_sleeps_then_branches_then_goes_on() -> None:
    body = Schedule()
    body.interval = timedelta(seconds=1)
    first = await run(body, context(Schedule))
    second = await run(body, context(Schedule, state=first.persistence_data))
    third = await run(body, context(Schedule, state=second.persistence_data))
    assert first.sleep_for == timedelta(seconds=1)
    assert second.branch_values == (None,)
    assert third.proceed


async def test_recur_until_stop() -> None:
    body = Recur()
    body.interval = 1
    first = await run(body, context(Recur))
    assert first.sleep_for == timedelta(seconds=1)
    second = await run(body, context(Recur, state=first.persistence_data))
    assert second.branch_values == (None,)
    body.stop = True
    assert (await run(body, context(Recur, state=second.persistence_data))).proceed


async def test_wait_for_subscribes_then_takes_event_or_times_out() -> None:
    body = WaitFor()
    body.event_name, body.event_key, body.timeout = "paid", 7, 5
    first = await run(body, context(WaitFor))
    assert (first.event_name, first.event_key) == ("paid", "7")
    assert first.event_timeout == timedelta(seconds=5)

    ctx = context(WaitFor)
    ctx.pointer.event_name, ctx.pointer.event_published, ctx.pointer.event_data = "paid", True, 1
    assert (await run(body, ctx)).proceed
    assert body.event_data == 1

    timed_out = WaitFor()
    ctx = context(WaitFor)
    ctx.pointer.event_name = "paid"
    result = await run(timed_out, ctx)
    assert (result.outcome_value, timed_out.timed_out) == (TIMEOUT_OUTCOME, True)


async def test_end_workflow_and_fork() -> None:
    assert (await run(EndWorkflow(), context(EndWorkflow))).end_workflow_requested
    assert (await run(Fork(), context(Fork))).proceed


async def test_inline_accepts_sync_async_and_none() -> None:
    async def later(ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.outcome(1)

    assert (await run(InlineStep(lambda ctx: None), context(Fork))).proceed
    assert (await run(InlineStep(later), context(Fork))).outcome_value == 1
    with pytest.raises(TypeError, match="return an ExecutionResult or None"):
        await run(InlineStep(lambda ctx: 5), context(Fork))
