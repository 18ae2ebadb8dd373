"""The engine takes the time from its Clock: with a test clock every time it records is
exact, and moving the clock (not sleeping) makes a retry due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wfe_core import ErrorBehavior, ExecutionResult, StepContext, WorkflowBuilder
from wfe_core.clock import Clock
from wfe_core.engine import WorkflowExecutor
from wfe_core.memory import MemoryLock, MemoryQueue
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.providers import QueueName
from wfe_core.testing.harness import EngineHarness

pytestmark = pytest.mark.anyio


class ManualClock:
    """A clock that stands still until moved."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, by: timedelta) -> None:
        self.at += by


@pytest.fixture
def clock() -> ManualClock:
    # Far from the wall clock, so a time taken from it would show.
    return ManualClock(datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))


@pytest.fixture
def engine(clock: ManualClock) -> EngineHarness:
    harness = EngineHarness()
    harness.executor = WorkflowExecutor(harness, clock=clock)
    return harness


def test_the_manual_clock_is_a_clock(clock: ManualClock) -> None:
    assert isinstance(clock, Clock)


async def test_a_retry_is_due_exactly_its_interval_after_the_clock_s_now(
    engine: EngineHarness, clock: ManualClock
) -> None:
    runs: list[int] = []

    def flaky(ctx: StepContext) -> ExecutionResult:
        runs.append(ctx.attempt)
        if len(runs) < 2:
            raise RuntimeError("not yet")
        return ExecutionResult.next()

    interval = timedelta(minutes=5)
    definition = (
        WorkflowBuilder().start_with(flaky).on_error(ErrorBehavior.retry(interval)).build("r")
    )
    workflow_id = (await engine.start(definition)).id
    first_run = clock.now()

    instance = await engine.persistence.get_workflow(workflow_id)
    await engine.executor.run_pass(instance, definition)
    stored = await engine.persistence.get_workflow(workflow_id)
    (pointer,) = stored.pointers
    assert pointer.status == PointerStatus.SLEEPING
    assert pointer.sleep_until == first_run + interval
    assert stored.next_execution == first_run + interval
    assert pointer.start_time == first_run
    (error,) = await engine.persistence.get_errors(workflow_id)
    assert error.time == first_run
    assert {event.time for event in engine.events} == {first_run}

    # Not due until the clock says so: another pass now runs nothing.
    clock.advance(interval - timedelta(microseconds=1))
    await engine.executor.run_pass(stored, definition)
    assert runs == [1]

    clock.advance(timedelta(microseconds=1))
    stored = await engine.persistence.get_workflow(workflow_id)
    await engine.executor.run_pass(stored, definition)
    assert runs == [1, 2]
    stored = await engine.persistence.get_workflow(workflow_id)
    assert stored.status == WorkflowStatus.COMPLETE
    assert stored.complete_time == first_run + interval
    (pointer,) = stored.pointers
    assert (pointer.start_time, pointer.end_time) == (first_run, first_run + interval)


async def test_a_sleep_and_an_event_timeout_end_at_clock_times(
    engine: EngineHarness, clock: ManualClock
) -> None:
    definition = (
        WorkflowBuilder()
        .start_with(lambda ctx: None)
        .delay(lambda data: timedelta(hours=1))
        .wait_for("paid", "order-1", timeout=timedelta(minutes=10))
        .build("waits")
    )
    workflow_id = (await engine.start(definition)).id
    start = clock.now()
    instance = await engine.persistence.get_workflow(workflow_id)
    await engine.executor.run_pass(instance, definition)
    stored = await engine.persistence.get_workflow(workflow_id)
    assert stored.next_execution == start + timedelta(hours=1)

    clock.advance(timedelta(hours=1))
    await engine.executor.run_pass(stored, definition)
    stored = await engine.persistence.get_workflow(workflow_id)
    waiting = stored.pointers[-1]
    assert waiting.status == PointerStatus.WAITING_FOR_EVENT
    assert waiting.sleep_until == start + timedelta(hours=1, minutes=10)
    (subscription,) = engine.subscriptions
    assert subscription.expires_at == start + timedelta(hours=1, minutes=10)
    assert subscription.create_time == start + timedelta(hours=1)


async def test_memory_lock_and_queue_take_wall_times_from_their_clock(
    clock: ManualClock,
) -> None:
    async with MemoryLock(clock=clock) as lock:
        lease = await lock.acquire("k", owner="a", ttl=30)
        assert lease is not None
        assert lease.expires_at == clock.now() + timedelta(seconds=30)
        clock.advance(timedelta(seconds=10))
        renewed = await lock.renew(lease, ttl=30)
        assert renewed.expires_at == clock.now() + timedelta(seconds=30)
    async with MemoryQueue(clock=clock) as queue:
        await queue.enqueue(QueueName.WORKFLOW, "w1")
        message = await queue.dequeue(QueueName.WORKFLOW)
        assert message is not None
        assert message.delivered_at == clock.now()
