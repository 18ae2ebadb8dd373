"""The executor's state transitions as pure functions: an instance, its definition, a step's
outcome and a fixed ``now`` in; the changed instance and what the pass must do out. No task
group, no store, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from wfe_core import ErrorBehavior, ExecutionResult, WorkflowBuilder
from wfe_core.engine import _failures as fx
from wfe_core.engine import _transitions as tx
from wfe_core.models import (
    LifecycleEventType,
    PointerStatus,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from wfe_core.models import ExecutionPointer

NOW = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


def noop(ctx: Any) -> None:
    return None


def boom() -> tx.StepFailure:
    try:
        raise RuntimeError("broken")
    except RuntimeError as exc:
        return tx.StepFailure(exc, "Traceback: broken")


def begin(definition: WorkflowDefinition) -> tuple[WorkflowInstance, ExecutionPointer]:
    instance = WorkflowInstance(definition.id, definition.version, data={})
    transition = tx.begin(instance, definition, NOW)
    (first,) = transition.created
    assert instance.pointers == [first]
    return instance, first


def run(
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    pointer: ExecutionPointer,
    outcome: ExecutionResult | tx.StepFailure,
    now: datetime = NOW,
) -> tx.Transition:
    """Start ``pointer`` and apply ``outcome`` to it, as a pass does around a step's run."""
    tx.mark_started(instance, pointer, now, announce=False)
    return tx.apply_outcome(instance, definition, pointer, outcome, now)


def by_step(instance: WorkflowInstance, step_id: int) -> list[ExecutionPointer]:
    return [p for p in instance.pointers if p.step_id == step_id]


def test_starting_a_pointer_counts_an_attempt_and_keeps_the_first_start_time() -> None:
    definition = WorkflowBuilder().start_with(noop).build("start")
    instance, first = begin(definition)
    assert first.step_id == definition.start_step
    assert first.status == PointerStatus.PENDING
    event = tx.mark_started(instance, first, NOW, announce=True)
    assert first.status == PointerStatus.RUNNING
    assert (first.attempt, first.start_time) == (1, NOW)
    assert event is not None
    assert (event.type, event.pointer_id, event.time) == (
        LifecycleEventType.STEP_STARTED,
        first.id,
        NOW,
    )
    later = NOW + timedelta(minutes=1)
    assert tx.mark_started(instance, first, later, announce=False) is None
    assert (first.attempt, first.start_time) == (2, NOW)


def test_a_completed_step_creates_its_successor() -> None:
    definition = WorkflowBuilder().start_with(noop).then(noop).build("seq")
    instance, first = begin(definition)
    transition = run(instance, definition, first, ExecutionResult.outcome("done"))
    assert first.status == PointerStatus.COMPLETE
    assert not first.active
    assert (first.end_time, first.outcome) == (NOW, "done")
    (successor,) = transition.created
    assert successor.step_id == definition.step(first.step_id).outcomes[0].next_step
    assert successor.status == PointerStatus.PENDING
    assert successor.active
    assert successor.predecessor_id == first.id
    assert instance.pointers == [first, successor]
    assert transition.ended == [first.id]
    assert transition.changed == {first.id, successor.id}
    assert [(e.type, e.pointer_id, e.time) for e in transition.events] == [
        (LifecycleEventType.STEP_COMPLETED, first.id, NOW)
    ]
    assert instance.status == WorkflowStatus.RUNNABLE
    assert transition.finished is None


def test_a_retry_sleeps_until_now_plus_its_interval_then_falls_back_to_failing() -> None:
    retry = ErrorBehavior.retry(timedelta(seconds=10), max_retries=1, backoff=3.0)
    definition = WorkflowBuilder().start_with(noop).on_error(retry).build("retry")
    instance, pointer = begin(definition)

    transition = run(instance, definition, pointer, boom())
    assert pointer.status == PointerStatus.SLEEPING
    assert pointer.active
    assert pointer.sleep_until == NOW + timedelta(seconds=10)
    assert transition.timed == [pointer]
    assert pointer.error == "RuntimeError: broken"
    (error,) = transition.errors
    assert (error.pointer_id, error.message, error.time) == (
        pointer.id,
        "RuntimeError: broken",
        NOW,
    )
    assert error.error_type == "builtins.RuntimeError"
    assert error.traceback == "Traceback: broken"
    assert [e.type for e in transition.events] == [LifecycleEventType.WORKFLOW_ERROR]
    assert instance.status == WorkflowStatus.RUNNABLE

    # Its retries ran out: what applies without one (fail).
    later = NOW + timedelta(seconds=10)
    transition = run(instance, definition, pointer, boom(), later)
    assert pointer.status == PointerStatus.FAILED
    assert instance.status == WorkflowStatus.FAILED
    assert instance.complete_time == later
    assert transition.finished == WorkflowStatus.FAILED


def test_a_failure_without_a_handler_fails_the_workflow_and_cancels_the_rest() -> None:
    definition = (
        WorkflowBuilder()
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(noop)).branch(lambda b: b.start_with(noop))
        )
        .build("fail")
    )
    instance, container = begin(definition)
    started = run(instance, definition, container, ExecutionResult.branch([None]))
    failing, waiting = started.created
    assert container.children == [failing.id, waiting.id]
    assert failing.scope == waiting.scope == [container.id]
    subscribed = run(instance, definition, waiting, ExecutionResult.wait_for_event("e", "k"))
    (subscription,) = subscribed.subscriptions

    transition = run(instance, definition, failing, boom())
    assert failing.status == PointerStatus.FAILED
    assert failing.end_time == NOW
    assert not any(p.active for p in instance.pointers)
    assert (waiting.status, waiting.end_time) == (PointerStatus.CANCELLED, NOW)
    assert (container.status, container.end_time) == (PointerStatus.CANCELLED, NOW)
    assert set(transition.ended) == {failing.id, waiting.id, container.id}
    assert transition.closed_subscriptions == [subscription.id]
    assert instance.status == WorkflowStatus.FAILED
    assert (instance.complete_time, instance.next_execution) == (NOW, None)
    assert [e.type for e in transition.events] == [
        LifecycleEventType.WORKFLOW_ERROR,
        LifecycleEventType.WORKFLOW_FAILED,
    ]
    assert transition.events[-1].message == "RuntimeError: broken"
    assert transition.finished == WorkflowStatus.FAILED


@pytest.mark.parametrize(
    ("behavior", "status"),
    [
        (ErrorBehavior.terminate(), WorkflowStatus.TERMINATED),
        (ErrorBehavior.suspend(), WorkflowStatus.SUSPENDED),
    ],
)
def test_terminate_and_suspend(behavior: ErrorBehavior, status: WorkflowStatus) -> None:
    definition = WorkflowBuilder().start_with(noop).on_error(behavior).build("other")
    instance, pointer = begin(definition)
    transition = run(instance, definition, pointer, boom())
    assert instance.status == status
    if status == WorkflowStatus.SUSPENDED:
        # Resuming runs the step again.
        assert (pointer.status, pointer.active) == (PointerStatus.PENDING, True)
        assert transition.finished is None
    else:
        assert pointer.status == PointerStatus.FAILED
        assert transition.finished == status


def test_a_failure_inside_a_saga_compensates_its_completed_steps_in_reverse() -> None:
    definition = (
        WorkflowBuilder()
        .saga(
            lambda s: (
                s.start_with(noop).compensate_with(noop).then(noop).compensate_with(noop).then(noop)
            )
        )
        .then(noop)
        .build("saga")
    )
    instance, saga = begin(definition)
    (first,) = run(instance, definition, saga, ExecutionResult.branch([None])).created
    (second,) = run(instance, definition, first, ExecutionResult.next()).created
    (third,) = run(instance, definition, second, ExecutionResult.next()).created

    transition = run(instance, definition, third, boom())
    assert third.status == PointerStatus.FAILED
    assert transition.compensating == 2
    assert saga.extensions[fx.COMPENSATED] is True
    assert saga.active
    assert instance.status == WorkflowStatus.RUNNABLE
    (undo_second,) = transition.created
    assert undo_second.step_id == definition.step(second.step_id).compensation_step_id
    assert undo_second.extensions[fx.COMPENSATES] == second.id
    assert undo_second.scope == [saga.id]
    assert undo_second.id in saga.children

    # Each compensation done marks what it undid and starts the next.
    (undo_first,) = run(instance, definition, undo_second, ExecutionResult.next()).created
    assert second.status == PointerStatus.COMPENSATED
    assert undo_first.extensions[fx.COMPENSATES] == first.id
    transition = run(instance, definition, undo_first, ExecutionResult.next())
    assert first.status == PointerStatus.COMPENSATED
    assert not transition.created

    # The saga then ends (failed, with the error: it has no compensate_with of its own to
    # call it compensated), and the workflow goes on after it.
    transition = run(instance, definition, saga, ExecutionResult.next())
    assert saga.status == PointerStatus.FAILED
    assert saga.error == "RuntimeError: broken"
    (after,) = transition.created
    assert after.predecessor_id == saga.id
    assert after.scope == []


def _failed_saga(
    behavior: ErrorBehavior | None, *, own_compensation: bool = False
) -> tuple[WorkflowInstance, WorkflowDefinition, ExecutionPointer]:
    """A saga (with ``behavior``) whose second step failed and whose compensations ran."""
    builder: WorkflowBuilder[Any] = WorkflowBuilder().saga(
        lambda s: s.start_with(noop).compensate_with(noop).then(noop)
    )
    if behavior is not None:
        builder.on_error(behavior)
    if own_compensation:
        builder.compensate_with(noop)
    definition = builder.then(noop).build("saga")
    instance, saga = begin(definition)
    (first,) = run(instance, definition, saga, ExecutionResult.branch([None])).created
    (second,) = run(instance, definition, first, ExecutionResult.next()).created
    (undo,) = run(instance, definition, second, boom()).created
    chain = run(instance, definition, undo, ExecutionResult.next()).created
    if own_compensation and behavior is None:
        (undo_saga,) = chain
        assert undo_saga.extensions[fx.COMPENSATES] == saga.id
        assert undo_saga.scope == [saga.id]  # keeps the saga busy until it is done
        assert not run(instance, definition, undo_saga, ExecutionResult.next()).created
        assert saga.active  # its end marks it
    else:
        assert not chain
    return instance, definition, saga


def test_a_saga_whose_own_compensation_ran_ends_compensated() -> None:
    instance, definition, saga = _failed_saga(None, own_compensation=True)
    (after,) = run(instance, definition, saga, ExecutionResult.next()).created
    assert saga.status == PointerStatus.COMPENSATED
    assert after.predecessor_id == saga.id


def test_a_retried_saga_sleeps_then_starts_afresh() -> None:
    behavior = ErrorBehavior.retry(interval=timedelta(seconds=5), max_retries=1)
    instance, definition, saga = _failed_saga(behavior, own_compensation=True)
    transition = run(instance, definition, saga, ExecutionResult.next())
    assert not transition.created  # nothing after the saga, not its own compensation
    assert saga.active
    assert saga.status == PointerStatus.SLEEPING
    assert saga.sleep_until == NOW + timedelta(seconds=5)
    assert saga.persistence_data is None  # its next run starts its branch again
    assert fx.COMPENSATED not in saga.extensions
    assert transition.timed == [saga]
    assert instance.status == WorkflowStatus.RUNNABLE

    # Out of retries: what applies to a failed step outside a saga (here: fail).
    (first,) = run(instance, definition, saga, ExecutionResult.branch([None])).created
    (second,) = run(instance, definition, first, ExecutionResult.next()).created
    (undo,) = run(instance, definition, second, boom()).created
    run(instance, definition, undo, ExecutionResult.next())
    transition = run(instance, definition, saga, ExecutionResult.next())
    assert saga.status == PointerStatus.FAILED
    assert transition.finished == WorkflowStatus.FAILED


@pytest.mark.parametrize(
    ("behavior", "status"),
    [
        (ErrorBehavior.terminate(), WorkflowStatus.TERMINATED),
        (ErrorBehavior.fail(), WorkflowStatus.FAILED),
        (ErrorBehavior.suspend(), WorkflowStatus.SUSPENDED),
    ],
)
def test_a_saga_s_own_behavior_applies_once_it_compensated(
    behavior: ErrorBehavior, status: WorkflowStatus
) -> None:
    instance, definition, saga = _failed_saga(behavior)
    transition = run(instance, definition, saga, ExecutionResult.next())
    assert not transition.created
    assert instance.status == status
    if status == WorkflowStatus.SUSPENDED:
        assert saga.active
        assert saga.status == PointerStatus.PENDING
        assert saga.persistence_data is None
    else:
        assert saga.status == PointerStatus.FAILED
        assert transition.finished == status


def test_a_saga_that_compensates_on_error_undoes_the_enclosing_saga() -> None:
    definition = (
        WorkflowBuilder()
        .saga(
            lambda outer: (
                outer.start_with(noop)
                .compensate_with(noop)
                .saga(lambda inner: inner.start_with(noop).then(noop))
                .on_error(ErrorBehavior.compensate())
                .compensate_with(noop)
            )
        )
        .build("nested")
    )
    instance, outer = begin(definition)
    (first,) = run(instance, definition, outer, ExecutionResult.branch([None])).created
    (inner,) = run(instance, definition, first, ExecutionResult.next()).created
    (a,) = run(instance, definition, inner, ExecutionResult.branch([None])).created
    assert not run(instance, definition, a, boom()).created
    (undo_inner,) = run(instance, definition, inner, ExecutionResult.next()).created
    assert inner.status == PointerStatus.FAILED
    assert undo_inner.extensions[fx.COMPENSATES] == inner.id
    (undo_first,) = run(instance, definition, undo_inner, ExecutionResult.next()).created
    assert inner.status == PointerStatus.COMPENSATED
    assert undo_first.extensions[fx.COMPENSATES] == first.id
    assert outer.extensions[fx.COMPENSATED] is True


def test_cancelling_steps_ends_them_and_what_runs_inside() -> None:
    definition = (
        WorkflowBuilder()
        .parallel(lambda p: p.branch(lambda b: b.wait_for("e", key="k").then(noop)))
        .cancel_condition(lambda data: True)
        .then(noop)
        .build("cancel")
    )
    instance, parallel = begin(definition)
    (wait,) = run(instance, definition, parallel, ExecutionResult.branch([None])).created
    run(instance, definition, wait, ExecutionResult.wait_for_event("e", "k"))
    subscription = wait.extensions[tx.SUBSCRIPTION_ID]

    transition = tx.cancel_steps(instance, definition, {parallel.step_id}, NOW)
    assert {p.status for p in (parallel, wait)} == {PointerStatus.CANCELLED}
    assert not parallel.active
    assert not wait.active
    assert set(transition.ended) == {parallel.id, wait.id}
    assert set(transition.changed) == {parallel.id, wait.id}
    assert transition.closed_subscriptions == [subscription]
    assert not transition.created  # the path ends there: it does not proceed


def test_a_step_cancelled_with_proceed_goes_on_to_its_successors() -> None:
    definition = (
        WorkflowBuilder()
        .wait_for("e", key="k")
        .cancel_condition(lambda data: True, proceed_after_cancel=True)
        .then(noop)
        .build("cancel-proceed")
    )
    instance, wait = begin(definition)
    run(instance, definition, wait, ExecutionResult.wait_for_event("e", "k"))
    transition = tx.cancel_steps(instance, definition, {wait.step_id}, NOW)
    assert wait.status == PointerStatus.CANCELLED
    (after,) = transition.created
    assert after.predecessor_id == wait.id
    # Again: nothing active of that step is left to cancel.
    assert not tx.cancel_steps(instance, definition, {wait.step_id}, NOW).changed


def test_waiting_for_an_event_subscribes_and_a_rerun_closes_the_subscription() -> None:
    definition = WorkflowBuilder().start_with(noop).build("wait")
    instance, pointer = begin(definition)
    result = ExecutionResult.wait_for_event("paid", "order-1", timeout=timedelta(minutes=5))
    transition = run(instance, definition, pointer, result)
    assert pointer.status == PointerStatus.WAITING_FOR_EVENT
    assert (pointer.event_name, pointer.event_key) == ("paid", "order-1")
    assert pointer.sleep_until == NOW + timedelta(minutes=5)
    assert pointer.attempt == 0
    assert transition.timed == [pointer]
    (subscription,) = transition.subscriptions
    assert (subscription.workflow_id, subscription.pointer_id) == (instance.id, pointer.id)
    assert (subscription.event_name, subscription.event_key) == ("paid", "order-1")
    assert subscription.expires_at == NOW + timedelta(minutes=5)
    assert subscription.create_time == NOW
    assert subscription.subscribe_as_of == datetime.min.replace(tzinfo=UTC)
    assert pointer.extensions[tx.SUBSCRIPTION_ID] == subscription.id

    transition = run(instance, definition, pointer, ExecutionResult.next())
    assert transition.closed_subscriptions == [subscription.id]
    assert tx.SUBSCRIPTION_ID not in pointer.extensions


def test_sleep_persist_and_branch_keep_the_step_active() -> None:
    definition = (
        WorkflowBuilder().for_each(lambda data: [1, 2], lambda b: b.start_with(noop)).build("f")
    )
    instance, pointer = begin(definition)
    transition = run(instance, definition, pointer, ExecutionResult.sleep(30, state={"s": 1}))
    assert pointer.status == PointerStatus.SLEEPING
    assert pointer.sleep_until == NOW + timedelta(seconds=30)
    assert pointer.persistence_data == {"s": 1}
    assert transition.timed == [pointer]
    run(instance, definition, pointer, ExecutionResult.persist({"s": 2}))
    assert (pointer.status, pointer.persistence_data) == (PointerStatus.PENDING, {"s": 2})
    transition = run(instance, definition, pointer, ExecutionResult.branch(["a", "b"]))
    assert [p.context_item for p in transition.created] == ["a", "b"]
    assert pointer.active
    assert pointer.children == [p.id for p in transition.created]


def test_end_workflow_cancels_the_other_branches() -> None:
    definition = (
        WorkflowBuilder()
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(noop)).branch(lambda b: b.start_with(noop))
        )
        .build("end")
    )
    instance, container = begin(definition)
    ending, other = run(instance, definition, container, ExecutionResult.branch([None])).created
    # The caller's index of the active pointers is used when given.
    active = {p.id: p for p in instance.pointers if p.active}
    tx.mark_started(instance, ending, NOW, announce=False)
    transition = tx.apply_outcome(
        instance, definition, ending, ExecutionResult.end_workflow(), NOW, active=active
    )
    assert ending.status == PointerStatus.COMPLETE
    assert (other.status, other.end_time) == (PointerStatus.CANCELLED, NOW)
    assert container.status == PointerStatus.CANCELLED
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.complete_time == NOW
    assert transition.finished == WorkflowStatus.COMPLETE
    assert set(transition.ended) == {ending.id, other.id, container.id}
    assert transition.events[-1].type == LifecycleEventType.WORKFLOW_COMPLETED


def test_settle_finishes_a_workflow_with_no_active_pointer() -> None:
    definition = WorkflowBuilder().start_with(noop).build("settle")
    instance, pointer = begin(definition)
    assert tx.settle(instance, definition, NOW) is None  # a pointer is active
    run(instance, definition, pointer, ExecutionResult.next())
    transition = tx.settle(instance, definition, NOW, announce=False)
    assert transition is not None
    assert instance.status == WorkflowStatus.COMPLETE
    assert (instance.complete_time, transition.finished) == (NOW, WorkflowStatus.COMPLETE)
    assert not transition.events
    assert tx.settle(instance, definition, NOW) is None  # finished already


def test_settle_fails_a_workflow_compensated_after_a_top_level_failure() -> None:
    definition = (
        WorkflowBuilder()
        .start_with(noop)
        .compensate_with(noop)
        .then(noop)
        .on_error(ErrorBehavior.compensate())
        .build("undo")
    )
    instance, first = begin(definition)
    (second,) = run(instance, definition, first, ExecutionResult.next()).created
    (undo,) = run(instance, definition, second, boom()).created
    assert instance.status == WorkflowStatus.RUNNABLE
    run(instance, definition, undo, ExecutionResult.next())
    assert first.status == PointerStatus.COMPENSATED
    transition = tx.settle(instance, definition, NOW)
    assert transition is not None
    assert instance.status == WorkflowStatus.FAILED
    assert transition.events[-1].message == "RuntimeError: broken"


def test_failing_a_workflow_without_a_step() -> None:
    definition = WorkflowBuilder().start_with(noop).build("unfit")
    instance = WorkflowInstance(definition.id, definition.version)
    transition = tx.fail_workflow(instance, definition, "data does not fit", NOW, error_type="E")
    assert transition is not None
    (error,) = transition.errors
    assert (error.pointer_id, error.message, error.error_type, error.time) == (
        None,
        "data does not fit",
        "E",
        NOW,
    )
    assert (instance.status, instance.complete_time) == (WorkflowStatus.FAILED, NOW)
    assert [e.type for e in transition.events] == [LifecycleEventType.WORKFLOW_FAILED]
    assert tx.fail_workflow(instance, definition, "again", NOW) is None
