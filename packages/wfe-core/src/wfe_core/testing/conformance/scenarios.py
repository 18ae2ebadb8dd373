"""End-to-end workflow scenarios every host/provider combination must pass.

Subclass :class:`WorkflowScenarios` in a test module, set ``__test__ = True`` and supply an
async ``host`` fixture yielding an entered host (``wfe_host.WorkflowHost``) built on the
providers under test, plus an ``anyio_backend`` fixture::

    class TestMemoryScenarios(WorkflowScenarios):
        __test__ = True

        @pytest.fixture
        async def host(self):
            async with WorkflowHost() as host:
                yield host

wfe-core never imports the host: :class:`ScenarioHost` types what the scenarios use.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody, StepContext
from wfe_core.builder import WorkflowBuilder
from wfe_core.errors import WfeError
from wfe_core.models import (
    ErrorBehavior,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    Page,
    PointerStatus,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.primitives._subworkflow import child_workflow_id
from wfe_core.testing.conformance._cancelled_children import CancelledChildScenarios
from wfe_core.testing.conformance._peers import PeerScenarios
from wfe_core.testing.definitions import EVENT_NAME, Node, build_tree, definition_trees

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["ScenarioHost", "WorkflowScenarios"]

#: Generous bound for one scenario; the machines tests run on are shared and noisy.
TIMEOUT = 30.0


class ScenarioHost(Protocol):
    """What the scenarios need of a host (``wfe_host.WorkflowHost`` has all of it)."""

    def register(self, definition: WorkflowDefinition) -> Any: ...

    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        version: int | None = None,
        reference: str | None = None,
    ) -> str: ...

    async def wait_for_workflow(
        self,
        workflow_id: str,
        timeout: float | None = None,
    ) -> WorkflowInstance: ...

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance: ...

    async def get_workflow_pointers(
        self, workflow_id: str, *, skip: int = 0, take: int = 100
    ) -> Page[ExecutionPointer]: ...

    async def publish_event(
        self, name: str, key: str, data: Any = None, effective_date: datetime | None = None
    ) -> str: ...

    async def suspend_workflow(self, workflow_id: str) -> bool: ...

    async def resume_workflow(self, workflow_id: str) -> bool: ...

    async def terminate_workflow(self, workflow_id: str) -> bool: ...

    def lifecycle_events(self) -> AsyncIterator[LifecycleEvent]: ...

    async def get_pending_activity(
        self, activity_name: str, worker_id: str, timeout: float | None = None, *, lease: Any = ...
    ) -> Any: ...

    async def submit_activity_success(self, token: str, result: Any = None) -> None: ...

    async def submit_activity_failure(self, token: str, error: Any) -> None: ...

    async def release_activity(self, token: str) -> bool: ...

    async def get_open_user_actions(
        self, workflow_id: str | None = None, assigned_to: str | None = None
    ) -> list[Any]: ...

    async def publish_user_action(self, key: str, user: str, value: Any) -> str: ...


def _unique(name: str) -> str:
    # Unique per test, so hosts sharing a database across tests never mix definitions.
    return f"{name}-{uuid.uuid4().hex[:8]}"


@attrs.define
class Journal:
    """attrs workflow data the scenarios record into."""

    log: list[str] = attrs.Factory(list)
    count: int = 0
    items: list[int] = attrs.Factory(list)
    kind: str = ""
    flag: bool = False
    payload: Any = None


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


@dataclasses.dataclass
class Shipment:
    """A nested dataclass of typed values."""

    sent: date = date(2026, 1, 1)
    parcels: frozenset[str] = frozenset()


@attrs.define
class Invoice:
    """attrs workflow data of the standard library's value types."""

    amount: Decimal = Decimal("0")
    grace: timedelta = timedelta(0)
    id: uuid.UUID = attrs.Factory(lambda: uuid.UUID(int=0))
    tier: Tier = Tier.SILVER
    shipment: Shipment = attrs.Factory(Shipment)
    rates: dict[str, Decimal] = attrs.Factory(dict)
    window: tuple[time_of_day, time_of_day] | None = None


@dataclasses.dataclass
class Point:
    """dataclass workflow data."""

    x: int = 0
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)


@attrs.define
class ChildInput:
    """Typed data of the child workflow in the sub-workflow scenarios."""

    numbers: list[int] = attrs.Factory(list)
    total: int = 0


@attrs.define
class ParentData:
    numbers: list[int] = attrs.Factory(list)
    total: int = 0
    log: list[str] = attrs.Factory(list)


def record(label: str) -> Any:
    """An inline step appending ``label`` to ``data.log``."""

    def step(ctx: StepContext) -> None:
        ctx.data.log.append(label)

    return step


class Fail(StepBody):
    """Always raises."""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        raise RuntimeError("boom")


class FlakyTwice(StepBody):
    """Fails on its first two attempts, then succeeds."""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        ctx.data.count += 1
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return ExecutionResult.next()


class SleepOneSecond(StepBody):
    async def run(self, ctx: StepContext) -> ExecutionResult:
        await anyio.sleep(1)
        return ExecutionResult.next()


class WorkflowScenarios(PeerScenarios, CancelledChildScenarios):
    """End-to-end scenarios; see the module docstring for how to run them (with
    workflow-core's scenarios translated, from :class:`PeerScenarios`)."""

    __test__ = False

    async def _run(
        self, host: ScenarioHost, definition: WorkflowDefinition, data: Any = None
    ) -> WorkflowInstance:
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, data)
        return await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)

    async def _wait_until(self, host: ScenarioHost, workflow_id: str, predicate: Any) -> None:
        """Wait until ``predicate(instance)`` holds (for states without a lifecycle event)."""
        with anyio.fail_after(TIMEOUT):
            # No lifecycle event marks these states, so the test looks (tests only).
            while not predicate(await host.get_workflow(workflow_id)):  # noqa: ASYNC110
                await anyio.sleep(0.02)

    @staticmethod
    def _waiting(instance: WorkflowInstance) -> bool:
        return any(p.status == PointerStatus.WAITING_FOR_EVENT for p in instance.pointers)

    # -- sequence and data -------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_sequence_runs_steps_in_order(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("a"))
            .then(record("b"))
            .then_fn(record("c"))
            .build(_unique("sequence"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["a", "b", "c"]
        assert instance.complete_time is not None
        assert all(not p.active for p in instance.pointers)

    @pytest.mark.anyio
    async def test_attrs_data_round_trips(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(lambda ctx: ExecutionResult.next(output={"count": 41}))
            .delay(timedelta(milliseconds=50))  # forces a second pass that reloads the data
            .then_fn(lambda ctx: setattr(ctx.data, "count", ctx.data.count + 1))
            .build(_unique("attrs-data"))
        )
        instance = await self._run(host, definition, Journal(log=["start"]))
        assert isinstance(instance.data, Journal)
        assert instance.data == Journal(log=["start"], count=42)

    @pytest.mark.anyio
    async def test_standard_value_types_round_trip_exactly(self, host: ScenarioHost) -> None:
        def bill(ctx: StepContext) -> None:
            ctx.data.amount += Decimal("0.000000000000000001")
            ctx.data.grace += timedelta(microseconds=1)
            ctx.data.tier = Tier.GOLD
            ctx.data.shipment.parcels |= {"p-2"}

        definition = (
            WorkflowBuilder(Invoice)
            .start_with(bill)
            .delay(timedelta(milliseconds=50))  # a second pass restores the stored data
            .then(bill)
            .build(_unique("typed-values"))
        )
        start = Invoice(
            amount=Decimal("1.235465673450897890"),
            grace=timedelta(days=3, seconds=7, microseconds=5),
            id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
            shipment=Shipment(date(2026, 2, 3), frozenset({"p-1"})),
            rates={"eur": Decimal("0.9137")},
            window=(time_of_day(9, 0), time_of_day(17, 30, 0, 250)),
        )
        instance = await self._run(host, definition, start)
        assert instance.data == attrs.evolve(
            start,
            amount=Decimal("1.235465673450897892"),
            grace=timedelta(days=3, seconds=7, microseconds=7),
            tier=Tier.GOLD,
            shipment=Shipment(date(2026, 2, 3), frozenset({"p-1", "p-2"})),
        )

    @pytest.mark.anyio
    async def test_dataclass_data_round_trips(self, host: ScenarioHost) -> None:
        def move(ctx: StepContext) -> None:
            ctx.data.x += 1
            ctx.data.tags.append("moved")

        definition = (
            WorkflowBuilder(Point)
            .start_with(move)
            .delay(timedelta(milliseconds=50))
            .then(move)
            .build(_unique("dataclass-data"))
        )
        instance = await self._run(host, definition, Point(x=1, y=2))
        assert instance.data == Point(x=3, y=2, tags=["moved", "moved"])

    @pytest.mark.anyio
    async def test_dict_data_round_trips(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(dict)
            .start_with(lambda ctx: ExecutionResult.next(output={"greeting": "hello"}))
            .delay(timedelta(milliseconds=50))
            .then_fn(lambda ctx: ctx.data.update(name=ctx.data["greeting"] + " world"))
            .build(_unique("dict-data"))
        )
        instance = await self._run(host, definition, {"n": 1})
        assert instance.data == {"n": 1, "greeting": "hello", "name": "hello world"}

    @pytest.mark.anyio
    async def test_inputs_and_outputs_map_data(self, host: ScenarioHost) -> None:
        class Double(StepBody):
            value: int = 0

            async def run(self, ctx: StepContext) -> ExecutionResult:
                self.doubled = self.value * 2
                return ExecutionResult.next()

        definition = (
            WorkflowBuilder(Journal)
            .start_with(Double)
            .input(value=lambda data: data.count)
            .output(count=lambda step: step.doubled)
            .build(_unique("mapping"))
        )
        instance = await self._run(host, definition, Journal(count=21))
        assert instance.data.count == 42

    # -- control flow ------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_parallel_branches_run_concurrently(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("start"))
            .parallel(
                lambda p: (
                    p.branch(lambda b: b.start_with(SleepOneSecond).then(record("a")))
                    .branch(lambda b: b.start_with(SleepOneSecond).then(record("b")))
                    .branch(lambda b: b.start_with(SleepOneSecond).then(record("c")))
                )
            )
            .then(record("joined"))
            .build(_unique("parallel"))
        )
        started = time.monotonic()
        instance = await self._run(host, definition)
        elapsed = time.monotonic() - started
        assert instance.status == WorkflowStatus.COMPLETE
        assert elapsed < 2.5, f"three 1 s branches took {elapsed:.2f} s"
        assert instance.data.log[0] == "start"
        assert sorted(instance.data.log[1:4]) == ["a", "b", "c"]
        assert instance.data.log[4] == "joined"

    @pytest.mark.anyio
    async def test_a_step_may_change_its_pointer_while_siblings_are_stored(
        self, host: ScenarioHost
    ) -> None:
        """A body that records something on its pointer and then awaits: the writes its
        sibling branches cause meanwhile store that pointer as it is, and its own end is
        stored as always."""
        sibling_done = anyio.Event()

        async def mark_then_wait(ctx: StepContext) -> None:
            ctx.pointer.extensions["progress"] = "half"
            await sibling_done.wait()
            ctx.pointer.extensions["progress"] = "done"

        async def finish_first(ctx: StepContext) -> None:
            await anyio.sleep(0.05)

        def release(ctx: StepContext) -> None:
            # Runs only once the sibling's first step and its own start were stored.
            sibling_done.set()

        definition = (
            WorkflowBuilder(Journal)
            .parallel(
                lambda p: p.branch(lambda b: b.start_with(mark_then_wait).name("marker")).branch(
                    lambda b: b.start_with(finish_first).then(release).then(record("sibling"))
                )
            )
            .then(record("joined"))
            .build(_unique("pointer-change"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["sibling", "joined"]
        (marker,) = [p for p in instance.pointers if p.step_name == "marker"]
        assert marker.extensions["progress"] == "done"

    @pytest.mark.anyio
    async def test_short_sleep_is_not_held_up_by_a_long_branch(self, host: ScenarioHost) -> None:
        started = time.monotonic()
        woke: list[float] = []

        async def long_step(ctx: StepContext) -> None:
            await anyio.sleep(1.5)

        definition = (
            WorkflowBuilder(Journal)
            .parallel(
                lambda p: p.branch(lambda b: b.start_with(long_step)).branch(
                    lambda b: b.delay(timedelta(milliseconds=100)).then(
                        lambda ctx: woke.append(time.monotonic() - started)
                    )
                )
            )
            .build(_unique("timer-in-pass"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert woke
        assert woke[0] < 1.2, f"a 0.1 s delay ended after {woke[0]:.2f} s"

    @pytest.mark.anyio
    async def test_for_each_parallel_visits_every_item(self, host: ScenarioHost) -> None:
        async def visit(ctx: StepContext) -> None:
            await anyio.sleep(0.5)
            ctx.data.items.append(ctx.item)

        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("start"))
            .for_each(lambda data: [1, 2, 3, 4, 5], lambda b: b.start_with(visit))
            .then(record("done"))
            .build(_unique("foreach-parallel"))
        )
        started = time.monotonic()
        instance = await self._run(host, definition)
        assert time.monotonic() - started < 2.0  # five 0.5 s items at once, not one by one
        assert sorted(instance.data.items) == [1, 2, 3, 4, 5]
        assert instance.data.log == ["start", "done"]

    @pytest.mark.anyio
    async def test_for_each_sequential_keeps_order(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .for_each(
                lambda data: [3, 1, 2],
                lambda b: b.start_with(lambda ctx: ctx.data.items.append(ctx.item)).then(
                    lambda ctx: ctx.data.log.append(f"after {ctx.item}")
                ),
                parallel=False,
            )
            .build(_unique("foreach-sequential"))
        )
        instance = await self._run(host, definition)
        assert instance.data.items == [3, 1, 2]
        assert instance.data.log == ["after 3", "after 1", "after 2"]

    @pytest.mark.anyio
    async def test_for_each_over_nothing_goes_on(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .for_each(lambda data: [], lambda b: b.start_with(record("never")))
            .then(record("after"))
            .build(_unique("foreach-empty"))
        )
        instance = await self._run(host, definition)
        assert instance.data.log == ["after"]

    @pytest.mark.anyio
    async def test_while_loops_until_condition_is_false(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .while_do(
                lambda data: data.count < 5,
                lambda b: b.start_with(lambda ctx: setattr(ctx.data, "count", ctx.data.count + 1)),
            )
            .then(record("after"))
            .build(_unique("while"))
        )
        instance = await self._run(host, definition)
        assert instance.data.count == 5
        assert instance.data.log == ["after"]

    @pytest.mark.anyio
    async def test_a_long_loop_keeps_its_whole_history(self, host: ScenarioHost) -> None:
        """A loop of many rounds, resumed halfway by an event (a new pass over the stored
        instance): every round's pointer is stored, the container lists every branch, and
        the pointers read page by page are the instance's."""
        rounds = 150
        key = _unique("halfway")
        definition = (
            WorkflowBuilder(Journal)
            .while_do(
                lambda data: data.count < rounds,
                lambda b: b.start_with(
                    lambda ctx: setattr(ctx.data, "count", ctx.data.count + 1)
                ).if_do(
                    lambda data: data.count == rounds // 2,
                    lambda w: w.start_with(record("waiting")).wait_for(EVENT_NAME, key=key),
                ),
            )
            .then(record("after"))
            .build(_unique("long-while"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, Journal())
        await self._wait_until(host, workflow_id, self._waiting)
        await host.publish_event(EVENT_NAME, key, "go")
        instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.count == rounds
        assert instance.data.log == ["waiting", "after"]
        (loop,) = [p for p in instance.pointers if p.step_name == "While"]
        rounds_run = [p for p in instance.pointers if p.scope and p.scope[0] == loop.id]
        assert loop.children == [p.id for p in rounds_run]
        assert len(rounds_run) == 2 * rounds  # the counting step and the if, each round
        assert all(p.status == PointerStatus.COMPLETE and not p.active for p in instance.pointers)
        paged: list[ExecutionPointer] = []
        while len(paged) < len(instance.pointers):
            page = await host.get_workflow_pointers(workflow_id, skip=len(paged), take=64)
            assert page.total == len(instance.pointers)
            assert page.items
            paged.extend(page.items)
        assert paged == instance.pointers

    @pytest.mark.anyio
    async def test_if_runs_branch_only_when_true(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .if_do(lambda data: data.count > 10, lambda b: b.start_with(record("big")))
            .if_do(lambda data: data.count <= 10, lambda b: b.start_with(record("small")))
            .then(record("after"))
            .build(_unique("if"))
        )
        instance = await self._run(host, definition, Journal(count=3))
        assert instance.data.log == ["small", "after"]

    @pytest.mark.anyio
    async def test_decide_runs_the_matching_case(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .decide(
                lambda data: data.kind,
                {
                    "x": lambda b: b.start_with(record("x")),
                    "y": lambda b: b.start_with(record("y")).then(record("y2")),
                },
            )
            .then(record("after"))
            .build(_unique("decide"))
        )
        host.register(definition)
        first = await host.start_workflow(definition.id, Journal(kind="y"))
        second = await host.start_workflow(definition.id, Journal(kind="none"))
        assert (await host.wait_for_workflow(first, TIMEOUT)).data.log == ["y", "y2", "after"]
        assert (await host.wait_for_workflow(second, TIMEOUT)).data.log == ["after"]

    @pytest.mark.anyio
    async def test_outcomes_route_by_value(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(lambda ctx: ExecutionResult.outcome("left"))
            .then(record("always"))
            .build(_unique("outcome"))
        )
        instance = await self._run(host, definition)
        assert instance.data.log == ["always"]
        assert instance.pointers[0].outcome == "left"

    @pytest.mark.anyio
    async def test_delay_waits_then_goes_on(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("before"))
            .delay(lambda data: timedelta(seconds=0.5))
            .then(record("after"))
            .build(_unique("delay"))
        )
        started = time.monotonic()
        instance = await self._run(host, definition)
        assert time.monotonic() - started >= 0.45
        assert instance.data.log == ["before", "after"]

    @pytest.mark.anyio
    async def test_schedule_runs_branch_later_in_background(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .schedule(lambda data: timedelta(seconds=0.3), lambda b: b.start_with(record("later")))
            .then(record("now"))
            .build(_unique("schedule"))
        )
        instance = await self._run(host, definition)
        assert instance.data.log == ["now", "later"]

    @pytest.mark.anyio
    async def test_recur_repeats_until_done(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .recur(
                lambda data: timedelta(milliseconds=50),
                until=lambda data: data.count >= 3,
                body=lambda b: b.start_with(
                    lambda ctx: setattr(ctx.data, "count", ctx.data.count + 1)
                ),
            )
            .then(record("main"))
            .build(_unique("recur"))
        )
        instance = await self._run(host, definition)
        assert instance.data.count == 3
        assert instance.data.log == ["main"]

    @pytest.mark.anyio
    async def test_end_workflow_completes_at_once(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("a"))
            .end_workflow()
            .then(record("never"))
            .build(_unique("end"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["a"]

    # -- errors ------------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_unhandled_error_fails_the_workflow(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal).start_with(Fail).then(record("never")).build(_unique("fails"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.FAILED
        assert instance.data.log == []
        failed = [p for p in instance.pointers if p.status == PointerStatus.FAILED]
        assert failed
        assert "boom" in (failed[0].error or "")

    @pytest.mark.anyio
    async def test_retry_then_success(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(FlakyTwice)
            .on_error(ErrorBehavior.retry(interval=timedelta(milliseconds=50), max_retries=5))
            .then(record("after"))
            .build(_unique("retry"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.count == 3
        assert instance.data.log == ["after"]

    @pytest.mark.anyio
    async def test_retry_exhausted_fails(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(FlakyTwice)
            .on_error(ErrorBehavior.retry(interval=0.02, max_retries=1))
            .build(_unique("retry-out"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.FAILED
        assert instance.data.count == 2

    @pytest.mark.anyio
    async def test_terminate_behavior_terminates(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(Fail)
            .on_error(ErrorBehavior.terminate())
            .build(_unique("terminate-on-error"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.TERMINATED

    @pytest.mark.anyio
    async def test_suspend_behavior_suspends_and_resume_reruns(self, host: ScenarioHost) -> None:
        class FailOnce(StepBody):
            async def run(self, ctx: StepContext) -> ExecutionResult:
                ctx.data.count += 1
                if ctx.data.count == 1:
                    raise RuntimeError("first run fails")
                return ExecutionResult.next()

        definition = (
            WorkflowBuilder(Journal)
            .start_with(FailOnce)
            .on_error(ErrorBehavior.suspend())
            .then(record("after"))
            .build(_unique("suspend-on-error"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        await self._wait_until(host, workflow_id, lambda i: i.status == WorkflowStatus.SUSPENDED)
        assert await host.resume_workflow(workflow_id)
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["after"]

    @pytest.mark.anyio
    async def test_saga_compensates_in_reverse_order(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .saga(
                lambda b: (
                    b.start_with(record("book"))
                    .compensate_with(record("unbook"))
                    .then(record("charge"))
                    .compensate_with(record("refund"))
                    .then(record("ship"))
                    .compensate_with(record("recall"))
                    .then(Fail)
                    .then(record("never"))
                )
            )
            .then(record("after saga"))
            .build(_unique("saga"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == [
            "book",
            "charge",
            "ship",
            "recall",
            "refund",
            "unbook",
            "after saga",
        ]
        statuses = {p.step_name: p.status for p in instance.pointers}
        # Its steps were undone; without a compensate_with of its own it is not compensated.
        assert statuses["Saga"] == PointerStatus.FAILED

    @pytest.mark.anyio
    async def test_saga_without_failure_does_not_compensate(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .saga(lambda b: b.start_with(record("book")).compensate_with(record("unbook")))
            .build(_unique("saga-ok"))
        )
        instance = await self._run(host, definition)
        assert instance.data.log == ["book"]

    # -- control from outside ----------------------------------------------------------------
    @pytest.mark.anyio
    async def test_suspend_resume_terminate(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal).wait_for("never-published", key="k").build(_unique("control"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        await self._wait_until(host, workflow_id, self._waiting)
        assert await host.suspend_workflow(workflow_id)
        assert (await host.get_workflow(workflow_id)).status == WorkflowStatus.SUSPENDED
        assert await host.resume_workflow(workflow_id)
        assert (await host.get_workflow(workflow_id)).status == WorkflowStatus.RUNNABLE
        assert await host.terminate_workflow(workflow_id)
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.status == WorkflowStatus.TERMINATED
        assert not await host.terminate_workflow(workflow_id)

    @pytest.mark.anyio
    async def test_terminate_cancels_a_running_step(self, host: ScenarioHost) -> None:
        class Forever(StepBody):
            async def run(self, ctx: StepContext) -> ExecutionResult:
                ctx.data.flag = True
                await anyio.sleep_forever()
                raise AssertionError("unreachable")  # pragma: no cover

        definition = WorkflowBuilder(Journal).start_with(Forever).build(_unique("forever"))
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        await self._wait_until(
            host,
            workflow_id,
            lambda i: any(p.status == PointerStatus.RUNNING for p in i.pointers),
        )
        started = time.monotonic()
        assert await host.terminate_workflow(workflow_id)
        assert time.monotonic() - started < 10
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.status == WorkflowStatus.TERMINATED

    # -- events ------------------------------------------------------------------------------
    def _event_flow(self, name: str) -> WorkflowDefinition:
        return (
            WorkflowBuilder(Journal)
            .start_with(record("waiting"))
            .wait_for("approval", key=lambda data: data.kind)
            .output(payload=lambda step: step.event_data)
            .then(record("approved"))
            .build(_unique(name))
        )

    @pytest.mark.anyio
    async def test_event_published_after_subscription(self, host: ScenarioHost) -> None:
        definition = self._event_flow("event-after")
        host.register(definition)
        key = uuid.uuid4().hex
        workflow_id = await host.start_workflow(definition.id, Journal(kind=key))
        await self._wait_until(host, workflow_id, self._waiting)
        await host.publish_event("approval", key, {"ok": True})
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.payload == {"ok": True}
        assert instance.data.log == ["waiting", "approved"]

    @pytest.mark.anyio
    async def test_a_delivered_event_runs_on_to_the_next_step_in_one_write(
        self, host: ScenarioHost
    ) -> None:
        # The delivery (the wait's pointer given the event, its subscription closed), the
        # wait's result and the next step's start are one write: the wait runs in place, as
        # the engine's container steps do. So is the step before the wait and the wait's
        # subscription. Every write raises the stored revision by one.
        seen: list[WorkflowInstance] = []

        class Look(StepBody):
            async def run(self, ctx: StepContext) -> ExecutionResult:
                seen.append(await host.get_workflow(ctx.workflow.id))
                return ExecutionResult.next()

        definition = (
            WorkflowBuilder(Journal)
            .start_with(Look)
            .wait_for("approval", key=lambda data: data.kind)
            .output(payload=lambda step: step.event_data)
            .then(Look)
            .build(_unique("event-in-place"))
        )
        host.register(definition)
        key = uuid.uuid4().hex
        workflow_id = await host.start_workflow(definition.id, Journal(kind=key))
        await self._wait_until(host, workflow_id, self._waiting)
        waiting = await host.get_workflow(workflow_id)
        (before,) = seen
        assert waiting.revision == before.revision + 1
        await host.publish_event("approval", key, {"ok": True})
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.payload == {"ok": True}
        after = seen[1]
        assert after.revision == waiting.revision + 1
        statuses = [p.status for p in after.pointers]
        assert statuses == [PointerStatus.COMPLETE, PointerStatus.COMPLETE, PointerStatus.RUNNING]
        assert after.pointers[1].event_data == {"ok": True}

    @pytest.mark.anyio
    async def test_event_published_before_subscription(self, host: ScenarioHost) -> None:
        definition = self._event_flow("event-before")
        host.register(definition)
        key = uuid.uuid4().hex
        await host.publish_event("approval", key, "early")
        workflow_id = await host.start_workflow(definition.id, Journal(kind=key))
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.payload == "early"

    @pytest.mark.anyio
    async def test_event_with_other_key_is_not_delivered(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .wait_for("approval", key=lambda data: data.kind, timeout=timedelta(seconds=0.5))
            .output(payload=lambda step: step.event_data)
            .build(_unique("event-other-key"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, Journal(kind=uuid.uuid4().hex))
        await host.publish_event("approval", uuid.uuid4().hex, "not yours")
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.payload is None

    @pytest.mark.anyio
    async def test_effective_date_skips_earlier_events(self, host: ScenarioHost) -> None:
        key = uuid.uuid4().hex
        await host.publish_event("tick", key, "old")
        # Apart by more than the millisecond precision providers must keep.
        await anyio.sleep(0.01)
        marker = datetime.now().astimezone()
        await anyio.sleep(0.01)
        definition = (
            WorkflowBuilder(Journal)
            .wait_for("tick", key=key, effective_date=lambda data: marker)
            .output(payload=lambda step: step.event_data)
            .build(_unique("event-effective"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        await self._wait_until(host, workflow_id, self._waiting)
        await host.publish_event("tick", key, "new")
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.payload == "new"

    @pytest.mark.anyio
    async def test_stored_events_are_delivered_earliest_first(self, host: ScenarioHost) -> None:
        """Five stored events, five waits each effective just before the next event: every
        wait gets the earliest event it matches (effective time, then publish order), also
        when all of them are queued again at once for a new subscription."""
        key = uuid.uuid4().hex
        base = datetime(2026, 1, 1, tzinfo=UTC)
        for minute in range(1, 6):
            await host.publish_event(
                "ordered", key, minute, effective_date=base + timedelta(minutes=minute)
            )

        def collect(ctx: StepContext) -> None:
            ctx.data.items.append(ctx.data.payload)

        def just_before(minute: int) -> Any:
            return lambda data: base + timedelta(minutes=minute, seconds=-1)

        builder = WorkflowBuilder(Journal).start_with(record("start"))
        for minute in range(1, 6):
            builder = (
                builder.wait_for("ordered", key=key, effective_date=just_before(minute))
                .output(payload=lambda step: step.event_data)
                .then(collect)
            )
        definition = builder.build(_unique("event-order"))
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.items == [1, 2, 3, 4, 5]

    @pytest.mark.anyio
    async def test_events_of_one_effective_time_go_in_publish_order(
        self, host: ScenarioHost
    ) -> None:
        key = uuid.uuid4().hex
        when = datetime(2026, 1, 1, tzinfo=UTC)
        for payload in ("first", "second", "third"):
            await host.publish_event("tied", key, payload, effective_date=when)
        definition = (
            WorkflowBuilder(Journal)
            .wait_for("tied", key=key, effective_date=lambda data: when)
            .output(payload=lambda step: step.event_data)
            .build(_unique("event-tie"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.data.payload == "first"

    @pytest.mark.anyio
    async def test_one_event_wakes_every_waiting_workflow(self, host: ScenarioHost) -> None:
        definition = self._event_flow("event-fan-out")
        host.register(definition)
        key = uuid.uuid4().hex
        ids = [await host.start_workflow(definition.id, Journal(kind=key)) for _ in range(3)]
        for workflow_id in ids:
            await self._wait_until(host, workflow_id, self._waiting)
        await host.publish_event("approval", key, "all of you")
        for workflow_id in ids:
            instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
            assert instance.data.payload == "all of you"

    @pytest.mark.anyio
    async def test_for_each_items_wait_for_their_own_events(self, host: ScenarioHost) -> None:
        prefix = uuid.uuid4().hex

        definition = (
            WorkflowBuilder(Journal)
            .for_each(
                lambda data: ["a", "b"],
                lambda b: (
                    b.wait_for("item-ready", key=lambda data, ctx: f"{prefix}-{ctx.item}")
                    .output(payload=lambda step: step.event_data)
                    .then(lambda ctx: ctx.data.log.append(f"{ctx.item} got {ctx.data.payload}"))
                ),
            )
            .build(_unique("foreach-events"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        await self._wait_until(
            host,
            workflow_id,
            lambda i: sum(p.status == PointerStatus.WAITING_FOR_EVENT for p in i.pointers) == 2,
        )
        await host.publish_event("item-ready", f"{prefix}-b", 2)
        await host.publish_event("item-ready", f"{prefix}-a", 1)
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert sorted(instance.data.log) == ["a got 1", "b got 2"]

    @pytest.mark.anyio
    async def test_wait_for_timeout_goes_on(self, host: ScenarioHost) -> None:
        class Check(StepBody):
            async def run(self, ctx: StepContext) -> ExecutionResult:
                return ExecutionResult.next()

        definition = (
            WorkflowBuilder(Journal)
            .wait_for("silence", key="k", timeout=timedelta(seconds=0.3))
            .output(flag=lambda step: step.timed_out)
            .then(Check)
            .then(record("after"))
            .build(_unique("wait-timeout"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.flag is True
        assert instance.data.log == ["after"]
        assert instance.pointers[0].outcome == "timeout"

    # -- activities and user tasks (issue 18 items 6 and 7) ---------------------------------
    @pytest.mark.anyio
    async def test_activity_is_taken_and_its_result_goes_into_the_data(
        self, host: ScenarioHost
    ) -> None:
        # workflow-core's ActivityScenario.
        name = _unique("act")
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("before"))
            .activity(name, parameters=lambda data: {"value1": "a", "value2": data.count})
            .output(payload=lambda step: step.result)
            .then(record("after"))
            .build(_unique("activity"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, Journal(count=1))
        with anyio.fail_after(TIMEOUT):
            pending = await host.get_pending_activity(name, "worker1", timeout=TIMEOUT)
            assert pending is not None
            assert pending.parameters == {"value1": "a", "value2": 1}
            assert pending.workflow_id == workflow_id
            # Taken: nobody else gets it.
            assert await host.get_pending_activity(name, "worker2") is None
            params = pending.parameters
            await host.submit_activity_success(
                pending.token, {"value1": params["value1"] + "1", "value2": params["value2"] + 1}
            )
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.payload == {"value1": "a1", "value2": 2}
        assert instance.data.log == ["before", "after"]
        # Done: the token is refused now.
        with pytest.raises(WfeError, match="no longer waiting"):
            await host.submit_activity_success(pending.token, {})

    @pytest.mark.anyio
    async def test_activity_failure_applies_the_error_behaviour(self, host: ScenarioHost) -> None:
        name = _unique("act")
        definition = (
            WorkflowBuilder(Journal)
            .activity(name, parameters={"n": 1})
            .on_error(ErrorBehavior.retry(interval=timedelta(seconds=0.05), max_retries=1))
            .output(payload=lambda step: step.result)
            .build(_unique("activity-fail"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        with anyio.fail_after(TIMEOUT):
            first = await host.get_pending_activity(name, "w1", timeout=TIMEOUT)
            assert first is not None
            await host.submit_activity_failure(first.token, "card declined")
            # The retry offers the activity afresh, with a new token.
            second = await host.get_pending_activity(name, "w1", timeout=TIMEOUT)
            assert second is not None
            assert second.token != first.token
            await host.submit_activity_success(second.token, "ok")
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.payload == "ok"

    @pytest.mark.anyio
    async def test_activity_failure_without_error_behaviour_fails_the_workflow(
        self, host: ScenarioHost
    ) -> None:
        name = _unique("act")
        definition = WorkflowBuilder(Journal).activity(name).build(_unique("activity-fails"))
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        with anyio.fail_after(TIMEOUT):
            pending = await host.get_pending_activity(name, "w1", timeout=TIMEOUT)
            assert pending is not None
            await host.submit_activity_failure(pending.token, {"code": 402})
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.FAILED
        assert "ActivityFailedError" in (instance.pointers[0].error or "")
        assert "402" in (instance.pointers[0].error or "")

    @pytest.mark.anyio
    async def test_activity_lease_lapses_and_the_stale_token_is_refused(
        self, host: ScenarioHost
    ) -> None:
        name = _unique("act")
        definition = (
            WorkflowBuilder(Journal)
            .activity(name)
            .output(payload=lambda step: step.result)
            .build(_unique("activity-lease"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id)
        with anyio.fail_after(TIMEOUT):
            dead = await host.get_pending_activity(name, "dies", timeout=TIMEOUT, lease=0.2)
            assert dead is not None
            # The first worker "dies": after its lease another one takes the activity.
            alive = await host.get_pending_activity(name, "lives", timeout=TIMEOUT)
            assert alive is not None
            assert alive.token != dead.token
            with pytest.raises(WfeError, match="stale"):
                await host.submit_activity_success(dead.token, "late")
            assert not await host.release_activity(dead.token)
            # Released, it can be taken again at once.
            assert await host.release_activity(alive.token)
            again = await host.get_pending_activity(name, "third", timeout=TIMEOUT)
            assert again is not None
            await host.submit_activity_success(again.token, "done")
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.payload == "done"

    @pytest.mark.anyio
    async def test_activity_timeout_fails_the_step(self, host: ScenarioHost) -> None:
        name = _unique("act")
        definition = (
            WorkflowBuilder(Journal)
            .activity(name, timeout=timedelta(seconds=0.3))
            .on_error(ErrorBehavior.terminate())
            .build(_unique("activity-timeout"))
        )
        instance = await self._run(host, definition)
        assert instance.status == WorkflowStatus.TERMINATED
        assert "ActivityTimeoutError" in (instance.pointers[0].error or "")
        assert await host.get_pending_activity(name, "late") is None

    @pytest.mark.anyio
    async def test_user_task_runs_the_chosen_option(self, host: ScenarioHost) -> None:
        # workflow-core's UserTask scenario (WorkflowCore.Users).
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("start"))
            .user_task("Approve the order?", assign_to=lambda data: data.kind)
            .with_option("yes", "Approve", lambda b: b.start_with(record("approved")))
            .with_option("no", "Reject", lambda b: b.start_with(record("rejected")))
            .then(record("end"))
            .build(_unique("user-task"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, Journal(kind="bob"))
        with anyio.fail_after(TIMEOUT):
            actions = await self._open_actions(host, workflow_id)
            assert [a.prompt for a in actions] == ["Approve the order?"]
            action = actions[0]
            assert action.assigned_to == "bob"
            assert [(o.value, o.label) for o in action.options] == [
                ("yes", "Approve"),
                ("no", "Reject"),
            ]
            assert await host.get_open_user_actions(workflow_id, assigned_to="alice") == []
            with pytest.raises(WfeError, match="not an option"):
                await host.publish_user_action(action.key, "bob", "maybe")
            await host.publish_user_action(action.key, "bob", "yes")
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["start", "approved", "end"]
        assert await host.get_open_user_actions(workflow_id) == []
        with pytest.raises(WfeError, match="no open user task"):
            await host.publish_user_action(action.key, "bob", "no")

    @pytest.mark.anyio
    async def test_user_task_escalates_and_stays_open(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .user_task(lambda data: f"Ship {data.count} items?", assign_to="bob")
            .with_option("ship", "Ship", lambda b: b.start_with(record("shipped")))
            .with_escalation(
                after=timedelta(seconds=0.3),
                assign_to=lambda data: "director",
                action=lambda b: b.start_with(record("reminded")),
            )
            .then(record("end"))
            .build(_unique("user-task-escalation"))
        )
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, Journal(count=3))
        with anyio.fail_after(TIMEOUT):
            actions = await self._open_actions(host, workflow_id)
            assert actions[0].assigned_to == "bob"
            assert actions[0].prompt == "Ship 3 items?"
            # The escalation reassigns the task to the director.
            while True:
                escalated = await host.get_open_user_actions(workflow_id, assigned_to="director")
                if escalated:
                    break
                await anyio.sleep(0.05)
            await host.publish_user_action(escalated[0].key, "director", "ship")
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["reminded", "shipped", "end"]

    async def _open_actions(self, host: ScenarioHost, workflow_id: str) -> list[Any]:
        while True:
            actions = await host.get_open_user_actions(workflow_id)
            if actions:
                return actions
            await anyio.sleep(0.05)

    # -- sub-workflows -----------------------------------------------------------------------
    def _child(self, fail: bool = False) -> WorkflowDefinition:
        def add(ctx: StepContext) -> None:
            if fail:
                raise RuntimeError("child broke")
            ctx.data.total = sum(ctx.data.numbers)

        return WorkflowBuilder(ChildInput).start_with(add).build(_unique("child"))

    @pytest.mark.anyio
    async def test_sub_workflow_typed_inputs_and_outputs(self, host: ScenarioHost) -> None:
        child = self._child()
        host.register(child)
        parent = (
            WorkflowBuilder(ParentData)
            .start_with(record("before"))
            .sub_workflow(
                child.id,
                inputs=lambda data: ChildInput(numbers=list(data.numbers)),
                outputs={"total": "total"},
            )
            .then(record("after"))
            .build(_unique("parent"))
        )
        instance = await self._run(host, parent, ParentData(numbers=[1, 2, 3]))
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.total == 6
        assert instance.data.log == ["before", "after"]

    @pytest.mark.anyio
    async def test_sub_workflow_failure_fails_parent_step(self, host: ScenarioHost) -> None:
        child = self._child(fail=True)
        host.register(child)
        parent = (
            WorkflowBuilder(ParentData)
            .sub_workflow(child.id, inputs=lambda data: {"numbers": [1]})
            .then(record("never"))
            .build(_unique("parent-fails"))
        )
        instance = await self._run(host, parent)
        assert instance.status == WorkflowStatus.FAILED
        assert instance.data.log == []
        failed = [p for p in instance.pointers if p.status == PointerStatus.FAILED]
        assert child.id in (failed[0].error or "")

    @pytest.mark.anyio
    async def test_terminated_child_fails_parent_step(self, host: ScenarioHost) -> None:
        child = WorkflowBuilder(ChildInput).wait_for("never", key="k").build(_unique("child"))
        host.register(child)
        parent = (
            WorkflowBuilder(ParentData)
            .sub_workflow(child.id)
            .then(record("never"))
            .build(_unique("parent-terminated-child"))
        )
        host.register(parent)
        events = host.lifecycle_events()
        parent_id = await host.start_workflow(parent.id)
        child_id = None
        with anyio.fail_after(TIMEOUT):
            async for event in events:
                if event.definition_id == child.id:
                    child_id = event.workflow_id
                    break
        assert child_id is not None
        await self._wait_until(host, child_id, self._waiting)
        child_instance = await host.get_workflow(child_id)
        assert child_instance.parent_workflow_id == parent_id
        assert await host.terminate_workflow(child_id)
        instance = await host.wait_for_workflow(parent_id, TIMEOUT)
        assert instance.status == WorkflowStatus.FAILED
        failed = [p for p in instance.pointers if p.status == PointerStatus.FAILED]
        assert "terminated" in (failed[0].error or "")

    async def _started(
        self, events: AsyncIterator[LifecycleEvent], definition_ids: set[str]
    ) -> dict[str, str]:
        """Definition id -> workflow id of the first start of each of ``definition_ids``."""
        found: dict[str, str] = {}
        with anyio.fail_after(TIMEOUT):
            async for event in events:
                if (
                    event.type == LifecycleEventType.WORKFLOW_STARTED
                    and event.definition_id in definition_ids
                ):
                    found.setdefault(event.definition_id, event.workflow_id)
                    if len(found) == len(definition_ids):
                        break
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
        return found

    @pytest.mark.anyio
    async def test_terminating_a_parent_terminates_its_children(self, host: ScenarioHost) -> None:
        # parent -> (waiting child -> waiting grandchild) and (a child that completes).
        grandchild = WorkflowBuilder(ChildInput).wait_for("never", key="k").build(_unique("gc"))
        child = WorkflowBuilder(ChildInput).sub_workflow(grandchild.id).build(_unique("child"))
        done = self._child()
        for definition in (grandchild, child, done):
            host.register(definition)
        parent = (
            WorkflowBuilder(ParentData)
            .parallel(
                lambda p: p.branch(lambda b: b.sub_workflow(child.id)).branch(
                    lambda b: b.sub_workflow(done.id, inputs=lambda d: {"numbers": [2, 3]})
                )
            )
            .then(record("never"))
            .build(_unique("parent-close"))
        )
        host.register(parent)
        events = host.lifecycle_events()
        parent_id = await host.start_workflow(parent.id)
        ids = await self._started(events, {child.id, grandchild.id, done.id})
        await self._wait_until(host, ids[grandchild.id], self._waiting)
        finished_child = await host.wait_for_workflow(ids[done.id], TIMEOUT)
        assert finished_child.status == WorkflowStatus.COMPLETE
        await self._wait_until(
            host,
            ids[child.id],
            lambda i: any(p.status == PointerStatus.WAITING_FOR_EVENT for p in i.pointers),
        )

        assert await host.terminate_workflow(parent_id)
        terminated = await host.wait_for_workflow(parent_id, TIMEOUT)
        assert terminated.status == WorkflowStatus.TERMINATED
        assert terminated.data.log == []
        for definition_id in (child.id, grandchild.id):
            instance = await host.wait_for_workflow(ids[definition_id], TIMEOUT)
            assert instance.status == WorkflowStatus.TERMINATED, definition_id
            assert all(not p.active for p in instance.pointers)
        # The finished child is left as it was, and the children's notifications do not
        # change the terminated parent.
        assert (await host.get_workflow(ids[done.id])).status == WorkflowStatus.COMPLETE
        await anyio.sleep(0.2)
        assert (await host.get_workflow(parent_id)).status == WorkflowStatus.TERMINATED
        assert not await host.terminate_workflow(parent_id)

    @pytest.mark.anyio
    async def test_terminate_reaches_a_child_whose_parent_step_is_still_running(
        self, host: ScenarioHost
    ) -> None:
        # The step starts its child the way SubWorkflow does, then keeps running: the parent's
        # stored state does not name the child yet (as when terminate cancels a pass between
        # the child's start and the write of the parent's wait).
        child = WorkflowBuilder(ChildInput).wait_for("never", key="k").build(_unique("child"))
        host.register(child)

        class StartsChildThenHangs(StepBody):
            async def run(self, ctx: StepContext) -> ExecutionResult:
                await ctx.host.start_workflow(
                    child.id,
                    parent_workflow_id=ctx.workflow.id,
                    parent_pointer_id=ctx.pointer.id,
                    workflow_id=child_workflow_id(ctx),
                )
                await anyio.sleep_forever()
                raise AssertionError("unreachable")  # pragma: no cover

        parent = (
            WorkflowBuilder(ParentData).start_with(StartsChildThenHangs).build(_unique("hangs"))
        )
        host.register(parent)
        events = host.lifecycle_events()
        parent_id = await host.start_workflow(parent.id)
        child_id = (await self._started(events, {child.id}))[child.id]
        await self._wait_until(host, child_id, self._waiting)
        assert await host.terminate_workflow(parent_id)
        assert (await host.wait_for_workflow(parent_id, TIMEOUT)).status == (
            WorkflowStatus.TERMINATED
        )
        terminated = await host.wait_for_workflow(child_id, TIMEOUT)
        assert terminated.status == WorkflowStatus.TERMINATED

    @pytest.mark.anyio
    async def test_sub_workflow_failure_can_be_compensated(self, host: ScenarioHost) -> None:
        child = self._child(fail=True)
        host.register(child)
        parent = (
            WorkflowBuilder(ParentData)
            .saga(
                lambda b: (
                    b.start_with(record("reserve"))
                    .compensate_with(record("release"))
                    .sub_workflow(child.id)
                )
            )
            .build(_unique("parent-saga"))
        )
        instance = await self._run(host, parent)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["reserve", "release"]

    @pytest.mark.anyio
    async def test_sub_workflow_of_unknown_definition_fails_clearly(
        self, host: ScenarioHost
    ) -> None:
        missing = _unique("no-such-child")
        parent = WorkflowBuilder(ParentData).sub_workflow(missing).build(_unique("parent-missing"))
        instance = await self._run(host, parent)
        assert instance.status == WorkflowStatus.FAILED
        failed = [p for p in instance.pointers if p.status == PointerStatus.FAILED]
        assert missing in (failed[0].error or "")
        assert "DefinitionNotFoundError" in (failed[0].error or "")

    # -- property ----------------------------------------------------------------------------
    @pytest.mark.anyio
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(tree=definition_trees(events=True, max_leaves=6))
    async def test_random_definitions_finish_with_every_step_accounted_for(
        self, host: ScenarioHost, tree: list[Node]
    ) -> None:
        expected: Counter[str] = Counter()
        builder: WorkflowBuilder[Any] = WorkflowBuilder()
        keys = build_tree(builder, tree, expected)
        definition = builder.build(_unique("random"))
        host.register(definition)
        # Published before the workflow waits: stored events are never lost.
        for key in keys:
            await host.publish_event(EVENT_NAME, key)
        workflow_id = await host.start_workflow(definition.id)
        instance = await host.wait_for_workflow(workflow_id, TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert Counter(instance.data.get("log", [])) == +expected
        assert all(not p.active for p in instance.pointers)

    # -- lifecycle ---------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_lifecycle_events_fire(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Journal)
            .start_with(record("a"))
            .then(record("b"))
            .build(_unique("lifecycle"))
        )
        host.register(definition)
        events = host.lifecycle_events()
        workflow_id = await host.start_workflow(definition.id)
        seen: list[LifecycleEventType] = []
        with anyio.fail_after(TIMEOUT):
            async for event in events:
                if event.workflow_id != workflow_id:
                    continue
                seen.append(event.type)
                if event.type == LifecycleEventType.WORKFLOW_COMPLETED:
                    break
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
        assert seen[0] == LifecycleEventType.WORKFLOW_STARTED
        assert seen.count(LifecycleEventType.STEP_STARTED) == 2
        assert seen.count(LifecycleEventType.STEP_COMPLETED) == 2
        assert seen[-1] == LifecycleEventType.WORKFLOW_COMPLETED
