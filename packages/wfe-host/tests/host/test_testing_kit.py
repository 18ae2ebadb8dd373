"""``wfe_host.testing.WorkflowTestEnvironment``: a real host on a manual clock. Advancing the
clock runs delays, schedules, recurs, ``wait_for`` timeouts and retry intervals at once, in
order; steps are substituted by name; events are published and workflows waited for."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from wfe_core import ErrorBehavior, ExecutionResult, StepBody, WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence
from wfe_host import WorkflowClient
from wfe_host.testing import NothingWaitingError, NotSettledError, WorkflowTestEnvironment

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from wfe_core import StepContext, WorkflowDefinition
    from wfe_core.models import WorkflowInstance

pytestmark = pytest.mark.anyio

DAY = timedelta(days=1)


@attrs.define
class Data:
    runs: list[str] = attrs.Factory(list)
    done: bool = False
    approved: Any = None


def mark(label: str) -> Callable[[StepContext], None]:
    """A step recording its label and the (clock) time it started."""

    def step(ctx: StepContext) -> None:
        ctx.data.runs.append(f"{label}@{_clock_of(ctx)}")

    step.__name__ = label
    return step


def _clock_of(ctx: StepContext) -> str:
    assert ctx.pointer.start_time is not None
    return ctx.pointer.start_time.strftime("%dT%H:%M")


async def test_a_thirty_day_delay_runs_when_the_clock_gets_there() -> None:
    definition = (
        WorkflowBuilder(Data)
        .start_with(mark("before"))
        .delay(timedelta(days=30))
        .then(mark("after"))
        .build("month")
    )
    async with WorkflowTestEnvironment(definition) as env:
        start = env.clock.now()
        workflow_id = await env.start_workflow("month")
        await env.advance(timedelta(days=29))
        assert (await env.get_workflow(workflow_id)).status == WorkflowStatus.RUNNABLE
        await env.advance(DAY)
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.runs == ["before@01T00:00", "after@31T00:00"]
    assert instance.complete_time == start + timedelta(days=30)


async def test_retry_intervals_elapse_on_the_clock() -> None:
    attempts: list[int] = []

    def flaky(ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")

    definition = (
        WorkflowBuilder(Data)
        .start_with(flaky)
        .on_error(ErrorBehavior.retry(interval=timedelta(hours=1), max_retries=5))
        .build("flaky")
    )
    async with WorkflowTestEnvironment(definition) as env:
        workflow_id = await env.start_workflow("flaky")
        assert attempts == [1]
        await env.advance(timedelta(minutes=59))
        assert attempts == [1]
        await env.advance(timedelta(minutes=1))
        assert attempts == [1, 2]
        await env.advance(timedelta(hours=5))  # the third attempt, an hour later, succeeds
        instance = await env.get_workflow(workflow_id)
    assert attempts == [1, 2, 3]
    assert instance.status == WorkflowStatus.COMPLETE


async def test_a_recur_runs_every_round_in_order_within_one_advance() -> None:
    rounds: list[str] = []

    def poll(ctx: StepContext) -> None:
        assert ctx.pointer.start_time is not None
        rounds.append(ctx.pointer.start_time.strftime("%H:%M"))
        if len(rounds) == 12:
            ctx.data.done = True

    definition = (
        WorkflowBuilder(Data)
        .recur(timedelta(minutes=5), until=lambda d: d.done, body=lambda b: b.start_with(poll))
        .build("poller")
    )
    async with WorkflowTestEnvironment(definition) as env:
        workflow_id = await env.start_workflow("poller")
        await env.advance(timedelta(hours=2))
        instance = await env.get_workflow(workflow_id)
    assert rounds == [f"{(5 * n) // 60:02d}:{(5 * n) % 60:02d}" for n in range(1, 13)]
    assert instance.status == WorkflowStatus.COMPLETE


async def test_a_schedule_runs_its_branch_at_its_time() -> None:
    definition = (
        WorkflowBuilder(Data)
        .schedule(timedelta(hours=3), lambda b: b.start_with(mark("remind")))
        .then(mark("main"))
        .build("scheduled")
    )
    async with WorkflowTestEnvironment(definition) as env:
        workflow_id = await env.start_workflow("scheduled")
        assert (await env.get_workflow(workflow_id)).data.runs == ["main@01T00:00"]
        instance = await env.run_until_finished(workflow_id)
    assert instance.data.runs == ["main@01T00:00", "remind@01T03:00"]


def approval() -> WorkflowDefinition:
    return (
        WorkflowBuilder(Data)
        .wait_for("approval", key="42", timeout=timedelta(hours=4))
        .output(approved=lambda step: step.event_data)
        .then(mark("after"))
        .build("approval")
    )


async def test_a_wait_for_timeout_fires_when_the_clock_passes_it() -> None:
    async with WorkflowTestEnvironment(approval()) as env:
        workflow_id = await env.start_workflow("approval")
        await env.advance(timedelta(hours=3, minutes=59))
        assert (await env.get_workflow(workflow_id)).status == WorkflowStatus.RUNNABLE
        await env.advance(timedelta(minutes=1))
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.approved is None
    assert instance.data.runs == ["after@01T04:00"]


async def test_an_event_published_before_the_timeout_is_delivered() -> None:
    async with WorkflowTestEnvironment(approval()) as env:
        workflow_id = await env.start_workflow("approval")
        await env.advance(timedelta(hours=1))
        await env.publish_event("approval", "42", {"by": "bob"})
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.approved == {"by": "bob"}
    assert instance.data.runs == ["after@01T01:00"]


async def test_steps_are_substituted_by_name() -> None:
    class Charge(StepBody):
        amount: int = 0
        receipt: str = ""

        async def run(self, ctx: StepContext) -> ExecutionResult:
            raise AssertionError("the real Charge must not run in tests")

    class FakeCharge(StepBody):
        amount: int = 0
        receipt: str = ""

        async def run(self, ctx: StepContext) -> ExecutionResult:
            self.receipt = f"fake-{self.amount}"
            return ExecutionResult.next()

    def no_email(ctx: StepContext) -> None:
        ctx.data.runs.append("email (substituted)")

    definition = (
        WorkflowBuilder(Data)
        .start_with(Charge)
        .name("Charge")
        .input(amount=7)
        .output(approved=lambda step: step.receipt)
        .then(mark("Send email"))
        .build("order")
    )
    async with WorkflowTestEnvironment(definition) as env:
        env.substitute_step("Charge", FakeCharge)
        env.substitute_step("Send email", no_email)
        workflow_id = await env.start_workflow("order")
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.approved == "fake-7"
    assert instance.data.runs == ["email (substituted)"]


async def test_bad_substitutes_and_advances_are_refused_clearly() -> None:
    async with WorkflowTestEnvironment() as env:
        with pytest.raises(TypeError, match="expected a StepBody subclass or a function"):
            env.substitute_step("Charge", 42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="time does not run backwards"):
            await env.advance(timedelta(seconds=-1))
        with pytest.raises(TypeError, match="expected a timedelta"):
            await env.advance(3600)  # type: ignore[arg-type]


async def test_run_until_finished_says_what_a_workflow_waits_for() -> None:
    async with WorkflowTestEnvironment(approval()) as env:
        definition = WorkflowBuilder(Data).wait_for("never", key="k").build("forever")
        env.register(definition)
        workflow_id = await env.start_workflow("forever")
        with pytest.raises(NotSettledError, match="it waits for event 'never' \\(key 'k'\\)"):
            await env.run_until_finished(workflow_id)


async def test_on_a_sqlite_store(tmp_path: Path) -> None:
    """The environment takes a persistence provider: the same time travel on SQLite."""
    sqlite = pytest.importorskip("wfe_sqlite")
    definition = (
        WorkflowBuilder(Data).delay(timedelta(days=7)).then(mark("week later")).build("week")
    )
    store = sqlite.SqlitePersistence(f"sqlite:///{tmp_path / 'wfe.db'}")
    async with WorkflowTestEnvironment(definition, persistence=store) as env:
        workflow_id = await env.start_workflow("week")
        await env.advance(timedelta(days=7))
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.runs == ["week later@08T00:00"]


async def test_thirty_days_of_timers_cost_only_the_work_they_run() -> None:
    """100 workflows sleeping 1 to 30 days and 10 recurring daily (300 rounds), and one
    ``advance`` over the month: what it costs is the passes it runs (CPU time, a bound
    for a loaded machine), never the days it simulates."""
    ticks = 0

    @attrs.define
    class Days:
        days: int = 1

    def tick(ctx: StepContext) -> None:
        nonlocal ticks
        ticks += 1

    delays = (
        WorkflowBuilder(Days).delay(lambda d: timedelta(days=d.days)).then(tick).build("delays")
    )
    daily = (
        WorkflowBuilder(Days)
        .recur(timedelta(days=1), until=lambda d: False, body=lambda b: b.start_with(tick))
        .build("daily")
    )
    async with WorkflowTestEnvironment(delays, daily) as env:
        ids = [await env.start_workflow("delays", Days(days=n % 30 + 1)) for n in range(100)]
        for _ in range(10):
            await env.start_workflow("daily")
        started = time.process_time()
        await env.advance(timedelta(days=30))
        took = time.process_time() - started
        finished = [await env.get_workflow(i) for i in ids]
    assert all(i.status == WorkflowStatus.COMPLETE for i in finished)
    assert ticks == 100 + 10 * 30
    print(f"advance(30 days), {ticks} timers fired: {took * 1000:.0f} ms CPU")
    assert took < 10


async def test_a_workflow_no_definition_runs_does_not_hold_up_the_others() -> None:
    """An instance whose definition is not registered stays due for ever; the clock still
    stops at every later due time of the others, in order."""
    times: list[str] = []

    def at(ctx: StepContext) -> None:
        assert ctx.pointer.start_time is not None
        times.append(ctx.pointer.start_time.strftime("%H:%M"))

    hourly = (
        WorkflowBuilder(Data)
        .delay(timedelta(hours=1))
        .then(at)
        .delay(timedelta(hours=1))
        .then(at)
        .build("hourly")
    )
    async with WorkflowTestEnvironment(hourly) as env:
        orphan = WorkflowBuilder(Data).start_with(at).build("orphan")
        async with WorkflowClient(persistence=env.host.persistence) as client:
            client.register(orphan)
            await client.start_workflow("orphan")  # no definition on the environment's host
        workflow_id = await env.start_workflow("hourly")
        await env.advance(timedelta(hours=3))
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert times == ["01:00", "02:00"]


# -- people and external workers ---------------------------------------------------------------
def _approval() -> WorkflowDefinition:
    return (
        WorkflowBuilder(Data)
        .user_task("Ship it?", assign_to="manager")
        .with_option("yes", "Ship", lambda b: b.start_with(mark("ship")))
        .with_option("no", "Hold", lambda b: b.start_with(mark("hold")))
        .with_escalation(
            after=timedelta(days=2),
            assign_to="director",
            action=lambda b: b.start_with(mark("esc")),
        )
        .then(mark("end"))
        .build("ship")
    )


async def test_an_escalation_after_two_days_fires_with_advance_days_3() -> None:
    async with WorkflowTestEnvironment(_approval()) as env:
        workflow_id = await env.start_workflow("ship", Data())
        [task] = await env.open_user_tasks(workflow_id)
        assert task.assigned_to == "manager"

        await env.advance(days=1)
        assert (await env.get_workflow(workflow_id)).data.runs == []

        await env.advance(days=2)
        instance = await env.get_workflow(workflow_id)
        # Escalated at day 2 exactly, on the test clock; the task stays open, reassigned.
        assert instance.data.runs == ["esc@03T00:00"]
        [task] = await env.open_user_tasks(workflow_id)
        assert task.assigned_to == "director"

        answered = await env.answer_user_task("yes", workflow_id=workflow_id, user="dora")
        instance = await env.get_workflow(workflow_id)
    assert answered.key == task.key
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.runs == ["esc@03T00:00", "ship@04T00:00", "end@04T00:00"]
    [pointer] = [p for p in instance.pointers if "wfe.user_task" in p.extensions]
    assert pointer.extensions["wfe.user_task"]["answered_by"] == "dora"


async def test_answer_user_task_says_what_is_open_when_it_cannot_choose() -> None:
    async with WorkflowTestEnvironment(_approval()) as env:
        first = await env.start_workflow("ship", Data())
        await env.start_workflow("ship", Data())
        with pytest.raises(NothingWaitingError, match=r"2 open user tasks .*workflow_id="):
            await env.answer_user_task("yes")
        with pytest.raises(NothingWaitingError, match=r"no open user task asking 'Other\?'"):
            await env.answer_user_task("yes", prompt="Other?")
        await env.answer_user_task("no", workflow_id=first)
        instance = await env.get_workflow(first)
    assert instance.data.runs == ["hold@01T00:00", "end@01T00:00"]


async def test_complete_and_fail_activity_play_the_external_worker() -> None:
    definition = (
        WorkflowBuilder(Data)
        .activity("charge", parameters=lambda data: {"amount": 12})
        .output(approved=lambda step: step.result)
        .on_error(ErrorBehavior.retry(interval=timedelta(hours=1), max_retries=1))
        .then(mark("done"))
        .build("charge")
    )
    async with WorkflowTestEnvironment(definition) as env:
        workflow_id = await env.start_workflow("charge", Data())
        failed = await env.fail_activity("charge", "card declined")
        assert failed.parameters == {"amount": 12}
        with pytest.raises(NothingWaitingError, match="'charge': no activity"):
            await env.complete_activity("charge", {"receipt": "r-1"})  # retry not due yet
        await env.advance(hours=1)
        taken = await env.complete_activity("charge", {"receipt": "r-1"})
        instance = await env.get_workflow(workflow_id)
    assert taken.workflow_id == workflow_id
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.approved == {"receipt": "r-1"}
    assert instance.data.runs == ["done@01T01:00"]


async def test_a_recur_round_is_two_writes() -> None:
    """The recur runs in place as the container steps do: a round stores the body's start
    with the recur's branch, then the body's end with the recur's next sleep (it was four
    writes: the recur's own start twice more)."""

    def poll(ctx: StepContext) -> None:
        ctx.data.runs.append("poll")

    definition = (
        WorkflowBuilder(Data)
        .recur(timedelta(hours=1), until=lambda d: False, body=lambda b: b.start_with(poll))
        .build("hourly")
    )
    async with WorkflowTestEnvironment(definition) as env:
        workflow_id = await env.start_workflow("hourly")
        before = (await env.get_workflow(workflow_id)).revision
        await env.advance(timedelta(hours=5))
        instance = await env.get_workflow(workflow_id)
    assert instance.data.runs == ["poll"] * 5
    assert instance.revision - before == 2 * 5


class CountingPersistence(MemoryPersistence):
    """Counts the instance loads: each pass starts with one."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        self.loads += 1
        return await super().get_workflow(workflow_id)


async def test_a_recur_round_is_one_pass() -> None:
    # Each round's write moves the due time on; the due time noted by the previous round's
    # write must not queue a second pass that finds nothing to do.
    rounds: list[int] = []

    def poll(ctx: StepContext) -> None:
        rounds.append(len(rounds))
        ctx.data.done = len(rounds) == 40

    definition = (
        WorkflowBuilder(Data)
        .recur(timedelta(hours=1), until=lambda d: d.done, body=lambda b: b.start_with(poll))
        .build("hourly")
    )
    persistence = CountingPersistence()
    async with WorkflowTestEnvironment(definition, persistence=persistence) as env:
        workflow_id = await env.start_workflow("hourly")
        await env.advance(timedelta(hours=41))
        loads = persistence.loads
        instance = await env.get_workflow(workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert len(rounds) == 40
    assert loads <= len(rounds) + 5, loads
