"""workflow-core's integration scenarios for what containers, cancel conditions, outcome
branches, jumps and multi-step compensations do, translated to WFE's API.

Internal: :class:`~wfe_core.testing.conformance.scenarios.WorkflowScenarios` inherits
:class:`PeerScenarios`, so every provider that runs the scenarios runs these. Each test names
the workflow-core scenario it translates (``test/WorkflowCore.IntegrationTests/Scenarios``);
where WFE differs on purpose, the test says so.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from wfe_core._results import ExecutionResult
from wfe_core.builder import WorkflowBuilder
from wfe_core.models import ErrorBehavior, PointerStatus, WorkflowStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_core._step import StepContext
    from wfe_core.models import WorkflowDefinition, WorkflowInstance
    from wfe_core.testing.conformance.scenarios import ScenarioHost

__all__ = ["PeerScenarios", "Tally"]

#: Generous bound for one scenario; the machines tests run on are shared and noisy.
_TIMEOUT = 30.0
#: A saga's retry interval in these scenarios (workflow-core's use 1 s: kept short here).
_RETRY = timedelta(milliseconds=50)


@attrs.define
class Tally:
    """The data of these scenarios: what ran, in order, and a counter."""

    log: list[str] = attrs.Factory(list)
    tries: int = 0
    key: str = attrs.Factory(lambda: uuid.uuid4().hex)
    value: str | None = None


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _log(label: str) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        ctx.data.log.append(label)

    return step


def _fails_until(success: int) -> Callable[[StepContext], None]:
    """A step whose run number ``success`` (counted in the data, across saga retries) is the
    first that succeeds."""

    def step(ctx: StepContext) -> None:
        ctx.data.tries += 1
        ctx.data.log.append(f"try {ctx.data.tries}")
        if ctx.data.tries < success:
            raise RuntimeError(f"try {ctx.data.tries} fails")

    return step


def _fail(ctx: StepContext) -> None:
    raise RuntimeError("boom")


def _pointer(instance: WorkflowInstance, name: str) -> list[Any]:
    return [p for p in instance.pointers if p.step_name == name]


class PeerScenarios:
    """The translated scenarios (a mixin of ``WorkflowScenarios``)."""

    __test__ = False

    async def _finish(
        self, host: ScenarioHost, definition: WorkflowDefinition, data: Any = None
    ) -> WorkflowInstance:
        host.register(definition)
        workflow_id = await host.start_workflow(
            definition.id, data if data is not None else Tally()
        )
        return await host.wait_for_workflow(workflow_id, timeout=_TIMEOUT)

    async def _until(self, host: ScenarioHost, workflow_id: str, predicate: Any) -> None:
        with anyio.fail_after(_TIMEOUT):
            # No lifecycle event marks these states, so the test looks (tests only).
            while not predicate(await host.get_workflow(workflow_id)):  # noqa: ASYNC110
                await anyio.sleep(0.02)

    @staticmethod
    def _retried_saga(behavior: ErrorBehavior, success: int) -> WorkflowBuilder[Tally]:
        return (
            WorkflowBuilder(Tally)
            .start_with(_log("first"))
            .compensate_with(_log("undo first"))
            .saga(
                lambda b: (
                    b.start_with(_log("book"))
                    .compensate_with(_log("unbook"))
                    .then(_fails_until(success))
                    .compensate_with(_log("undo try"))
                    .then(_log("ship"))
                    .compensate_with(_log("recall"))
                )
            )
            .on_error(behavior)
            .then(_log("tail"))
        )

    # -- a saga's own error behaviour (issue 18, bug 3) --------------------------------------
    @pytest.mark.anyio
    async def test_a_retried_saga_runs_again_after_compensating(self, host: ScenarioHost) -> None:
        """RetrySagaScenario: each failed run is compensated, then the saga runs again."""
        definition = self._retried_saga(ErrorBehavior.retry(interval=_RETRY), 3).build(
            _unique("retry-saga")
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == [
            "first",
            *("book", "try 1", "undo try", "unbook"),
            *("book", "try 2", "undo try", "unbook"),
            *("book", "try 3", "ship"),
            "tail",
        ]
        assert [p.status for p in _pointer(instance, "Saga")] == [PointerStatus.COMPLETE]

    @pytest.mark.anyio
    async def test_a_retried_saga_runs_again_after_a_failure_in_a_nested_step(
        self, host: ScenarioHost
    ) -> None:
        """NestedRetrySagaScenario: the failing step is inside an ``if_do`` in the saga."""
        definition = (
            WorkflowBuilder(Tally)
            .start_with(_log("first"))
            .compensate_with(_log("undo first"))
            .saga(
                lambda b: (
                    b.start_with(_log("book"))
                    .compensate_with(_log("unbook"))
                    .if_do(
                        lambda data: True,
                        lambda i: i.start_with(_fails_until(3)).compensate_with(_log("undo try")),
                    )
                    .then(_log("ship"))
                    .compensate_with(_log("recall"))
                )
            )
            .on_error(ErrorBehavior.retry(interval=_RETRY))
            .then(_log("tail"))
            .build(_unique("nested-retry-saga"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log.count("undo try") == 2
        assert instance.data.log.count("unbook") == 2
        assert "recall" not in instance.data.log
        assert "undo first" not in instance.data.log
        assert instance.data.log[-3:] == ["try 3", "ship", "tail"]

    @pytest.mark.anyio
    async def test_a_saga_out_of_retries_fails_the_workflow(self, host: ScenarioHost) -> None:
        definition = self._retried_saga(
            ErrorBehavior.retry(interval=_RETRY, max_retries=1), 99
        ).build(_unique("retry-saga-out"))
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.FAILED
        assert instance.data.log == [
            "first",
            *("book", "try 1", "undo try", "unbook"),
            *("book", "try 2", "undo try", "unbook"),
        ]

    @pytest.mark.anyio
    async def test_a_terminating_saga_terminates_the_workflow(self, host: ScenarioHost) -> None:
        """FailingSagaScenario: ``on_error(terminate())`` on the saga."""
        definition = (
            WorkflowBuilder(Tally)
            .start_with(_log("first"))
            .saga(
                lambda b: (
                    b.start_with(_log("book"))
                    .compensate_with(_log("unbook"))
                    .if_do(lambda data: True, lambda i: i.start_with(_fail))
                    .then(_log("never"))
                )
            )
            .on_error(ErrorBehavior.terminate())
            .then(_log("tail"))
            .build(_unique("terminate-saga"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.TERMINATED
        # Its steps are undone first (workflow-core's scenario has no compensations).
        assert instance.data.log == ["first", "book", "unbook"]

    @pytest.mark.anyio
    async def test_a_failing_saga_fails_the_workflow(self, host: ScenarioHost) -> None:
        definition = self._retried_saga(ErrorBehavior.fail(), 99).build(_unique("fail-saga"))
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.FAILED
        assert instance.data.log == ["first", "book", "try 1", "undo try", "unbook"]

    @pytest.mark.anyio
    async def test_a_suspending_saga_suspends_and_resuming_runs_it_again(
        self, host: ScenarioHost
    ) -> None:
        definition = self._retried_saga(ErrorBehavior.suspend(), 2).build(_unique("suspend-saga"))
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, Tally())
        await self._until(host, workflow_id, lambda i: i.status == WorkflowStatus.SUSPENDED)
        suspended = await host.get_workflow(workflow_id)
        assert suspended.data.log == ["first", "book", "try 1", "undo try", "unbook"]
        assert await host.resume_workflow(workflow_id)
        instance = await host.wait_for_workflow(workflow_id, _TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log[5:] == ["book", "try 2", "ship", "tail"]

    @pytest.mark.anyio
    async def test_a_saga_undone_as_a_whole_runs_its_own_compensation_last(
        self, host: ScenarioHost
    ) -> None:
        """SagaScenario (ExceptionScenario): the saga's ``compensate_with`` runs after its
        steps' compensations, and the workflow goes on after the saga."""
        definition = (
            WorkflowBuilder(Tally)
            .start_with(_log("first"))
            .compensate_with(_log("undo first"))
            .saga(
                lambda b: (
                    b.start_with(_log("book"))
                    .compensate_with(_log("unbook"))
                    .then(_fail)
                    .compensate_with(_log("undo failed"))
                    .then(_log("never"))
                    .compensate_with(_log("undo never"))
                )
            )
            .compensate_with(_log("undo saga"))
            .then(_log("tail"))
            .compensate_with(_log("undo tail"))
            .build(_unique("saga-compensation"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["first", "book", "undo failed", "unbook", "undo saga", "tail"]
        assert [p.status for p in _pointer(instance, "Saga")] == [PointerStatus.COMPENSATED]

    # -- cancel conditions (issue 18, item 5) ------------------------------------------------
    @pytest.mark.anyio
    async def test_a_cancel_condition_cancels_a_waiting_step(self, host: ScenarioHost) -> None:
        """CancelledEventScenario: the first event to arrive sets the value; the other
        branch's wait is cancelled and that branch does not go on."""

        def branch(event: str) -> Callable[[WorkflowBuilder[Tally]], Any]:
            return lambda b: (
                b.start_with(_log(f"{event} branch"))
                .wait_for(event, key=lambda data: data.key)
                .output(value=lambda step: step.event_data)
                .cancel_condition(lambda data: data.value is not None)
                .then(_log(f"{event} fired"))
            )

        definition = (
            WorkflowBuilder(Tally)
            .start_with(_log("start"))
            .parallel(lambda p: p.branch(branch("event1")).branch(branch("event2")))
            .wait_for("event3", key=lambda data: data.key)
            .build(_unique("cancelled-event"))
        )
        host.register(definition)
        data = Tally()
        workflow_id = await host.start_workflow(definition.id, data)

        def waiting_for(event: str) -> Callable[[WorkflowInstance], bool]:
            return lambda i: any(
                p.step_name == f"WaitFor {event}" and p.status == PointerStatus.WAITING_FOR_EVENT
                for p in i.pointers
            )

        await self._until(host, workflow_id, waiting_for("event1"))
        await self._until(host, workflow_id, waiting_for("event2"))
        await host.publish_event("event2", data.key, "Pass")
        await self._until(host, workflow_id, waiting_for("event3"))
        # Stored: the cancelled wait survives a reload (and a restart) as it is.
        stored = await host.get_workflow(workflow_id)
        (cancelled,) = _pointer(stored, "WaitFor event1")
        assert cancelled.status == PointerStatus.CANCELLED
        assert not cancelled.active
        await host.publish_event("event1", data.key, "Fail")
        await host.publish_event("event3", data.key)
        instance = await host.wait_for_workflow(workflow_id, _TIMEOUT)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.value == "Pass"
        assert "event2 fired" in instance.data.log
        assert "event1 fired" not in instance.data.log

    @pytest.mark.anyio
    async def test_a_step_cancelled_with_proceed_goes_on(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Tally)
            .parallel(
                lambda p: p.branch(
                    lambda b: (
                        b.wait_for("never-published", key=lambda data: data.key)
                        .cancel_condition(lambda data: "go" in data.log, proceed_after_cancel=True)
                        .then(_log("after the wait"))
                    )
                ).branch(lambda b: b.delay(timedelta(milliseconds=50)).then(_log("go")))
            )
            .then(_log("tail"))
            .build(_unique("cancel-proceed"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == ["go", "after the wait", "tail"]
        (wait,) = _pointer(instance, "WaitFor never-published")
        assert wait.status == PointerStatus.CANCELLED

    # -- outcome branches, jumps, multi-step compensation (issue 18, item 9) -----------------
    @pytest.mark.anyio
    async def test_when_runs_the_branches_of_the_outcome_then_goes_on(
        self, host: ScenarioHost
    ) -> None:
        """WhenScenario: every branch whose value matches runs; the next step waits for
        them."""

        async def slow(ctx: StepContext) -> None:
            await anyio.sleep(0.1)
            ctx.data.log.append("case 2")

        definition = (
            WorkflowBuilder(Tally)
            .start_with(lambda ctx: ExecutionResult.outcome(2))
            .when(1, lambda b: b.start_with(_log("case 1")))
            .when(2, lambda b: b.start_with(slow))
            .when(2, lambda b: b.start_with(_log("case 2 again")))
            .then(_log("after"))
            .build(_unique("when"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert sorted(instance.data.log[:2]) == ["case 2", "case 2 again"]
        assert instance.data.log[2:] == ["after"]

    @pytest.mark.anyio
    async def test_when_without_a_matching_outcome_goes_on(self, host: ScenarioHost) -> None:
        definition = (
            WorkflowBuilder(Tally)
            .start_with(_log("check"))
            .when("retry", lambda b: b.start_with(_log("retrying")))
            .then(_log("after"))
            .build(_unique("when-none"))
        )
        instance = await self._finish(host, definition)
        assert instance.data.log == ["check", "after"]

    @pytest.mark.anyio
    async def test_attach_jumps_to_a_named_step(self, host: ScenarioHost) -> None:
        """AttachScenario: a branch jumps back to an earlier step until a condition ends it."""

        def tick(ctx: StepContext) -> None:
            ctx.data.tries += 1
            ctx.data.log.append("step1")

        definition = (
            WorkflowBuilder(Tally)
            .start_with(tick)
            .id("step1")
            .if_do(
                lambda data: data.tries < 4,
                lambda b: b.start_with(_log("step2")).attach("step1"),
            )
            .build(_unique("attach"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log.count("step1") == 4
        assert instance.data.log.count("step2") == 3

    @pytest.mark.anyio
    async def test_a_multi_step_compensation_runs_in_its_turn(self, host: ScenarioHost) -> None:
        """MultistepCompensationScenario: compensations run latest first; a
        ``compensate_with_sequence`` runs all its steps in its turn."""
        definition = (
            WorkflowBuilder(Tally)
            .saga(
                lambda b: (
                    b.start_with(_log("1"))
                    .compensate_with(_log("undo 1"))
                    .then(_log("2"))
                    .name("two")
                    .compensate_with_sequence(
                        lambda c: c.start_with(_log("undo 2a")).then(_log("undo 2b"))
                    )
                    .then(_log("3"))
                    .compensate_with(_log("undo 3"))
                    .then(_fail)
                    .compensate_with(_log("undo 4"))
                )
            )
            .build(_unique("multi-step-compensation"))
        )
        instance = await self._finish(host, definition)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.data.log == [
            *("1", "2", "3"),
            *("undo 4", "undo 3", "undo 2a", "undo 2b", "undo 1"),
        ]
        (two,) = _pointer(instance, "two")
        assert two.status == PointerStatus.COMPENSATED
