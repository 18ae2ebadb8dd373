"""Internal to the engine: the state transitions of a pass, as pure functions.

Each takes the instance (changed in place), the definition, what happened (a step's outcome,
or nothing left to run) and ``now``, and returns a :class:`Transition`: what the pass must
still do about it (store new subscriptions and errors, close subscriptions, announce lifecycle
events, track new, ended and timed pointers, cancel steps that are running). None reads a
clock, does I/O or needs a task group, so each is unit-tested on its own with a fixed ``now``.

``active``, where taken, is the caller's index of the active pointers by id (every active
pointer in the instance, perhaps with some that ended since): with it a transition never
walks the finished pointers, so a step costs the same at step 10,000 as at step 1. Without
it the instance's pointers are looked at.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.engine import _failures as fx
from wfe_core.engine import _pointers as px
from wfe_core.models._definition import ErrorBehavior, ErrorBehaviorKind
from wfe_core.models._event import Event, EventSubscription
from wfe_core.models._instance import INTERNAL_POINTER, ExecutionError, ExecutionPointer
from wfe_core.models._lifecycle import LifecycleEvent, LifecycleEventType
from wfe_core.models._status import PointerStatus, WorkflowStatus
from wfe_core.primitives._subworkflow import CHILD_FINISHED_EVENT, TERMINATE_CHILD_EVENT

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence

    from wfe_core._results import ExecutionResult
    from wfe_core.models._definition import StepDefinition, WorkflowDefinition
    from wfe_core.models._instance import WorkflowInstance

__all__ = [
    "SUBSCRIPTION_ID",
    "StepFailure",
    "Transition",
    "apply_outcome",
    "begin",
    "cancel_steps",
    "fail_workflow",
    "lifecycle_event",
    "mark_started",
    "settle",
]

#: ``pointer.extensions`` key: the id of the pointer's open event subscription.
SUBSCRIPTION_ID = "subscription_id"
#: Subscriptions with no effective date see every stored event of their name and key.
_BEGINNING = datetime.min.replace(tzinfo=UTC)


@attrs.frozen
class StepFailure:
    """A step's run raised ``error`` (``trace`` is its formatted traceback)."""

    error: BaseException
    trace: str


class Transition:
    """What a transition leaves for the pass to do, besides the instance it changed.

    Parts it has nothing for are empty tuples: a step's transition allocates only what it
    holds. (A plain class the transition is built in, not an attrs one built at the end: a
    pass makes one or two per step, and that second object cost a loop's round about as much
    as the rest of applying its result.)
    """

    __slots__ = (
        "changed",
        "closed_subscriptions",
        "compensating",
        "created",
        "ended",
        "errors",
        "events",
        "finished",
        "outbox",
        "subscriptions",
        "timed",
    )

    #: Pointers it created, in the instance's order (appended to ``instance.pointers``).
    created: Sequence[ExecutionPointer]
    #: Ids of pointers it ended (completed, failed or cancelled); a step of one of these that
    #: is still running is abandoned.
    ended: Sequence[str]
    #: Active pointers it gave a time to wake at (``sleep_until``) or an event to wait for.
    timed: Sequence[ExecutionPointer]
    #: Ids of every pointer it changed or created (see ``changed_pointers`` of
    #: ``PersistenceProvider.persist_workflow``).
    changed: Collection[str]
    #: Event subscriptions to store with the instance.
    subscriptions: Sequence[EventSubscription]
    #: Ids of subscriptions to close once the instance is stored.
    closed_subscriptions: Sequence[str]
    #: Errors to store with the instance.
    errors: Sequence[ExecutionError]
    #: Lifecycle events to publish once the instance is stored (none unless ``announce``).
    events: Sequence[LifecycleEvent]
    #: Events to store in the same write as the instance (an outbox): the termination of
    #: the child workflow of a sub-workflow step it cancelled.
    outbox: Sequence[Event]
    #: How many compensations a failure set out to run (``None``: it compensated nothing).
    compensating: int | None
    #: The status the workflow finished with, when the transition finished it.
    finished: WorkflowStatus | None

    def __init__(self) -> None:
        self.created = self.ended = self.timed = self.subscriptions = ()
        self.closed_subscriptions = self.errors = self.events = self.outbox = ()
        self.changed = ()
        self.compensating = self.finished = None

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in Transition.__slots__
            if getattr(self, name) not in ((), None)
        )
        return f"Transition({parts})"


def lifecycle_event(
    instance: WorkflowInstance,
    event_type: LifecycleEventType,
    pointer: ExecutionPointer | None,
    now: datetime,
    message: str | None = None,
) -> LifecycleEvent:
    """The lifecycle event ``event_type`` of ``instance`` (and ``pointer``) at ``now``."""
    return LifecycleEvent(
        type=event_type,
        workflow_id=instance.id,
        definition_id=instance.definition_id,
        version=instance.version,
        reference=instance.reference,
        step_id=None if pointer is None else pointer.step_id,
        step_name=None if pointer is None else pointer.step_name,
        pointer_id=None if pointer is None else pointer.id,
        message=message,
        time=now,
    )


def begin(instance: WorkflowInstance, definition: WorkflowDefinition, now: datetime) -> Transition:
    """Create the first pointer of an instance that has none: its definition's start step."""
    out = _Builder(instance, definition, now, None, announce=False)
    out.new_pointer(definition.start_step, scope=[], item=None, predecessor=None)
    return out


def mark_started(
    instance: WorkflowInstance, pointer: ExecutionPointer, now: datetime, *, announce: bool
) -> LifecycleEvent | None:
    """Mark ``pointer`` as running from ``now`` (one more attempt); its ``STEP_STARTED``
    event when ``announce``. The caller stores ``pointer`` as changed."""
    pointer.status = PointerStatus.RUNNING
    pointer.sleep_until = None
    pointer.attempt += 1
    if pointer.start_time is None:
        pointer.start_time = now
    if not announce:
        return None
    return lifecycle_event(instance, LifecycleEventType.STEP_STARTED, pointer, now)


def apply_outcome(
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    pointer: ExecutionPointer,
    outcome: ExecutionResult | StepFailure,
    now: datetime,
    *,
    active: Mapping[str, ExecutionPointer] | None = None,
    announce: bool = True,
    step: StepDefinition | None = None,
) -> Transition:
    """Apply the outcome of one run of ``pointer``'s step: a result (done, persist, sleep,
    branch, wait for an event, end the workflow) or a failure (retry, suspend, compensate,
    terminate, fail), with the step's outputs already in the workflow data. ``step`` is
    ``pointer``'s step when the caller has it at hand (else it is looked up)."""
    out = _Builder(instance, definition, now, active, announce=announce)
    out.changed = {pointer.id}
    if step is None:
        step = definition.step(pointer.step_id)
    if isinstance(outcome, StepFailure):
        out.fail_step(pointer, step, outcome)
    else:
        out.apply_result(pointer, step, outcome)
    return out


def settle(
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    now: datetime,
    *,
    active: Mapping[str, ExecutionPointer] | None = None,
    announce: bool = True,
) -> Transition | None:
    """Finish a runnable instance none of whose pointers is active any more: complete, or
    failed when a top-level failure waited for its compensations. ``None`` when there is
    nothing to do (the instance is not runnable, or a pointer is still active)."""
    if instance.status != WorkflowStatus.RUNNABLE:
        return None
    pointers = instance.pointers if active is None else active.values()
    if any(p.active for p in pointers):
        return None
    out = _Builder(instance, definition, now, active, announce=announce)
    failed = [p for p in instance.pointers if fx.FAIL_AFTER_COMPENSATION in p.extensions]
    if failed:
        out.finish(WorkflowStatus.FAILED, LifecycleEventType.WORKFLOW_FAILED, failed[0].error)
    else:
        out.finish(WorkflowStatus.COMPLETE, LifecycleEventType.WORKFLOW_COMPLETED, None)
    return out


def cancel_steps(
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    step_ids: Collection[int],
    now: datetime,
    *,
    active: Mapping[str, ExecutionPointer] | None = None,
    announce: bool = True,
) -> Transition:
    """Cancel the active pointers of the steps ``step_ids`` (their cancel condition holds)
    and every pointer active inside them; a step with ``proceed_after_cancel`` goes on to
    the steps that follow it whatever its outcome."""
    out = _Builder(instance, definition, now, active, announce=announce)
    pointers = list(instance.pointers if active is None else active.values())
    for pointer in pointers:
        if not pointer.active or pointer.step_id not in step_ids:
            continue
        out.cancel_all(p for p in pointers if pointer.id in p.scope)
        out.cancel(pointer)
        step = definition.step(pointer.step_id)
        if step.proceed_after_cancel:
            for route in step.outcomes:
                if route.matches(None):
                    out.new_pointer(
                        route.next_step,
                        scope=list(pointer.scope),
                        item=pointer.context_item,
                        predecessor=pointer.id,
                    )
    return out


def fail_workflow(
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    message: str,
    now: datetime,
    *,
    error_type: str | None = None,
    announce: bool = True,
) -> Transition | None:
    """Fail ``instance`` without running a step, with ``message`` as its error; ``None``
    when it has finished already."""
    if instance.status.is_finished:
        return None
    out = _Builder(instance, definition, now, None, announce=announce)
    out.errors = [
        ExecutionError(
            workflow_id=instance.id,
            pointer_id=None,
            message=message,
            error_type=error_type,
            time=now,
        )
    ]
    out.finish(WorkflowStatus.FAILED, LifecycleEventType.WORKFLOW_FAILED, message)
    return out


def _pointer_id() -> str:
    """A new random pointer id, like :func:`~wfe_core.models.new_id` (128 random bits as 32
    hex digits) without the cost of building a ``uuid.UUID``."""
    return os.urandom(16).hex()


class _Builder(Transition):
    """One transition under way: the changes it makes, kept in the :class:`Transition` it
    is (each part a container made when its first item comes)."""

    __slots__ = ("active", "announce", "definition", "instance", "now")

    created: list[ExecutionPointer] | tuple[()]
    ended: list[str] | tuple[()]
    timed: list[ExecutionPointer] | tuple[()]
    changed: set[str] | tuple[()]
    subscriptions: list[EventSubscription] | tuple[()]
    closed_subscriptions: list[str] | tuple[()]
    errors: list[ExecutionError] | tuple[()]
    events: list[LifecycleEvent] | tuple[()]
    outbox: list[Event] | tuple[()]

    def __init__(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        now: datetime,
        active: Mapping[str, ExecutionPointer] | None,
        *,
        announce: bool,
    ) -> None:
        # The parts as ``Transition.__init__`` sets them, here: a call fewer for every step.
        self.created = self.ended = self.timed = self.subscriptions = ()
        self.closed_subscriptions = self.errors = self.events = self.outbox = ()
        self.changed = ()
        self.compensating = self.finished = None
        self.instance = instance
        self.definition = definition
        self.now = now
        self.active = active
        self.announce = announce

    def change(self, pointer_id: str) -> None:
        if self.changed:
            self.changed.add(pointer_id)
        else:
            self.changed = {pointer_id}

    def end(self, pointer_id: str) -> None:
        if self.ended:
            self.ended.append(pointer_id)
        else:
            self.ended = [pointer_id]

    def time(self, pointer: ExecutionPointer) -> None:
        if self.timed:
            self.timed.append(pointer)
        else:
            self.timed = [pointer]

    # -- a result ----------------------------------------------------------------------------
    def apply_result(
        self, pointer: ExecutionPointer, step: StepDefinition, result: ExecutionResult
    ) -> None:
        if result.proceed and fx.COMPENSATED in pointer.extensions:
            self.end_compensated_saga(pointer, step, result)
            return
        now = self.now
        pointer.error = None
        if result.event_name is None:
            self.close_subscription(pointer)
        if result.end_workflow_requested:
            self.complete_pointer(pointer, result)
            self.cancel_active()
            self.finish(WorkflowStatus.COMPLETE, LifecycleEventType.WORKFLOW_COMPLETED, None)
        elif result.proceed:
            self.complete_pointer(pointer, result)
            self.after_complete(pointer, step, result)
        elif result.branch_values is not None:
            pointer.attempt = 0
            pointer.persistence_data = result.persistence_data
            scope = [pointer.id, *pointer.scope]
            for value in result.branch_values:
                for child in step.children:
                    self.new_pointer(child, scope=scope, item=value, predecessor=None)
        elif result.event_name is not None:
            pointer.attempt = 0
            self.subscribe(pointer, result)
        elif result.sleep_for is not None:
            pointer.attempt = 0
            pointer.status = PointerStatus.SLEEPING
            pointer.sleep_until = now + result.sleep_for
            self.time(pointer)
            pointer.persistence_data = result.persistence_data
        else:
            pointer.attempt = 0
            pointer.status = PointerStatus.PENDING
            pointer.persistence_data = result.persistence_data

    def complete_pointer(
        self,
        pointer: ExecutionPointer,
        result: ExecutionResult,
        status: PointerStatus = PointerStatus.COMPLETE,
    ) -> None:
        pointer.status = status
        pointer.active = False
        # Inline (not ``end``): one call fewer for every step a workflow runs.
        if self.ended:
            self.ended.append(pointer.id)
        else:
            self.ended = [pointer.id]
        pointer.end_time = self.now
        pointer.outcome = result.outcome_value
        self.emit(LifecycleEventType.STEP_COMPLETED, pointer)

    def after_complete(
        self, pointer: ExecutionPointer, step: StepDefinition, result: ExecutionResult
    ) -> None:
        target_id = pointer.extensions.get(fx.COMPENSATES)
        if target_id is not None:
            # A compensation finished: mark what it undid, then undo the next one. A saga's
            # own compensation runs last, while the saga is still active: its end marks it.
            target = self.instance.pointer(target_id)
            if not target.active:
                target.status = PointerStatus.COMPENSATED
                self.change(target.id)
            self.start_compensation(list(pointer.extensions.get(fx.CHAIN, [])), pointer.scope)
            return
        for route in step.outcomes:
            if route.matches(result.outcome_value):
                self.new_pointer(
                    route.next_step,
                    scope=list(pointer.scope),
                    item=pointer.context_item,
                    predecessor=pointer.id,
                )

    def subscribe(self, pointer: ExecutionPointer, result: ExecutionResult) -> None:
        self.close_subscription(pointer)
        assert result.event_name is not None
        assert result.event_key is not None
        pointer.status = PointerStatus.WAITING_FOR_EVENT
        pointer.event_name = result.event_name
        pointer.event_key = result.event_key
        pointer.event_effective_date = result.event_effective_date
        pointer.event_published = False
        pointer.event_data = None
        pointer.sleep_until = (
            None if result.event_timeout is None else self.now + result.event_timeout
        )
        self.time(pointer)
        subscription = EventSubscription(
            workflow_id=self.instance.id,
            pointer_id=pointer.id,
            step_id=pointer.step_id,
            event_name=result.event_name,
            event_key=result.event_key,
            subscribe_as_of=result.event_effective_date or _BEGINNING,
            expires_at=pointer.sleep_until,
            create_time=self.now,
            data=result.subscription_data,
        )
        pointer.extensions[SUBSCRIPTION_ID] = subscription.id
        if self.subscriptions:
            self.subscriptions.append(subscription)
        else:
            self.subscriptions = [subscription]

    def close_subscription(self, pointer: ExecutionPointer) -> None:
        subscription_id = pointer.extensions.pop(SUBSCRIPTION_ID, None)
        if subscription_id is not None:
            if self.closed_subscriptions:
                self.closed_subscriptions.append(subscription_id)
            else:
                self.closed_subscriptions = [subscription_id]

    # -- a failure ---------------------------------------------------------------------------
    def fail_step(
        self, pointer: ExecutionPointer, step: StepDefinition, failure: StepFailure
    ) -> None:
        now = self.now
        instance = self.instance
        definition = self.definition
        error = failure.error
        message = f"{type(error).__name__}: {error}"
        error_record = ExecutionError(
            workflow_id=instance.id,
            pointer_id=pointer.id,
            message=message,
            step_id=step.id,
            step_name=step.display_name,
            error_type=f"{type(error).__module__}.{type(error).__qualname__}",
            traceback=failure.trace,
            time=now,
        )
        if self.errors:
            self.errors.append(error_record)
        else:
            self.errors = [error_record]
        pointer.error = message
        failures = int(pointer.extensions.get(fx.FAILURES, 0)) + 1
        pointer.extensions[fx.FAILURES] = failures
        # A re-run subscribes afresh (a retried sub-workflow starts a new child).
        self.close_subscription(pointer)
        pointer.event_name = pointer.event_key = None
        pointer.event_published = False
        pointer.event_data = None
        self.emit(LifecycleEventType.WORKFLOW_ERROR, pointer, message)

        in_saga = fx.saga_of(instance, definition, pointer) is not None
        is_compensation = fx.in_compensation(instance, pointer)
        behavior = fx.chosen_behavior(definition, step, in_saga, is_compensation)
        self.handle_failure(
            pointer, behavior, message, failures, in_saga, is_compensation, restart=False
        )

    def handle_failure(
        self,
        pointer: ExecutionPointer,
        behavior: ErrorBehavior,
        message: str,
        failures: int,
        in_saga: bool,
        is_compensation: bool,
        *,
        restart: bool,
    ) -> None:
        """Apply ``behavior`` to the failure number ``failures`` of ``pointer``. With
        ``restart`` (a saga that compensated) a retry or a resume runs it from its start."""
        instance = self.instance
        if behavior.kind == ErrorBehaviorKind.RETRY:
            if behavior.max_retries is None or failures <= behavior.max_retries:
                pointer.status = PointerStatus.SLEEPING
                pointer.sleep_until = self.now + behavior.retry_delay(failures)
                if restart:
                    self.restart(pointer)
                self.time(pointer)
                return
            behavior = fx.fallback_behavior(self.definition, in_saga, is_compensation)
        kind = behavior.kind
        if kind == ErrorBehaviorKind.SUSPEND:
            pointer.status = PointerStatus.PENDING
            if restart:
                self.restart(pointer)
            instance.status = WorkflowStatus.SUSPENDED
            self.emit(LifecycleEventType.WORKFLOW_SUSPENDED, None, message)
        elif kind == ErrorBehaviorKind.COMPENSATE:
            self.compensate(pointer)
        else:
            self.end_failed_pointer(pointer)
            self.cancel_active()
            if kind == ErrorBehaviorKind.TERMINATE:
                self.finish(
                    WorkflowStatus.TERMINATED, LifecycleEventType.WORKFLOW_TERMINATED, message
                )
            else:
                self.finish(WorkflowStatus.FAILED, LifecycleEventType.WORKFLOW_FAILED, message)

    def end_compensated_saga(
        self, saga: ExecutionPointer, step: StepDefinition, result: ExecutionResult
    ) -> None:
        """A saga that compensated runs again: its compensations are done. Without an error
        behaviour of its own it is over (``compensated`` when its own ``compensate_with``
        ran last, else ``failed``) and the flow goes on after it; with one, that applies
        to the saga as to any failed step."""
        behavior = step.error_behavior
        if behavior is None:
            status = (
                PointerStatus.COMPENSATED
                if step.compensation_step_id is not None
                else PointerStatus.FAILED
            )
            self.complete_pointer(saga, result, status)
            self.after_complete(saga, step, result)
            return
        failures = int(saga.extensions.get(fx.FAILURES, 0)) + 1
        saga.extensions[fx.FAILURES] = failures
        in_saga = fx.saga_of(self.instance, self.definition, saga) is not None
        message = saga.error or f"saga {step.display_name} compensated"
        self.handle_failure(saga, behavior, message, failures, in_saga, False, restart=True)

    def restart(self, container: ExecutionPointer) -> None:
        """Make a compensated saga start its branch afresh when it next runs."""
        container.persistence_data = None
        container.extensions.pop(fx.COMPENSATED, None)
        self.change(container.id)

    def end_failed_pointer(self, pointer: ExecutionPointer) -> None:
        self.change(pointer.id)
        pointer.status = PointerStatus.FAILED
        pointer.active = False
        self.end(pointer.id)
        pointer.end_time = self.now

    def compensate(self, failed: ExecutionPointer) -> None:
        instance = self.instance
        saga = fx.saga_of(instance, self.definition, failed)
        saga_step = None
        if saga is not None:
            members = px.in_scope(instance, saga.id)
            scope = [saga.id, *saga.scope]
            saga.extensions[fx.COMPENSATED] = True
            saga.error = failed.error
            self.change(saga.id)
            saga_step = self.definition.step(saga.step_id)
        else:
            members = list(instance.pointers)
            scope = []
            failed.extensions[fx.FAIL_AFTER_COMPENSATION] = True
        self.end_failed_pointer(failed)
        self.cancel_all(members)
        targets = fx.compensation_targets(instance, self.definition, failed, members)
        if (
            saga is not None
            and saga_step is not None
            and saga_step.error_behavior is None
            and saga_step.compensation_step_id is not None
        ):
            # The saga is undone as a whole: its own compensate_with runs after its steps'.
            # (With an error behaviour of its own, that decides what follows instead.)
            targets.append(saga.id)
        self.compensating = len(targets)
        self.start_compensation(targets, scope)

    def start_compensation(self, targets: list[str], scope: list[str]) -> None:
        if not targets:
            return
        target = self.instance.pointer(targets[0])
        compensation_step = self.definition.step(target.step_id).compensation_step_id
        assert compensation_step is not None
        pointer = self.new_pointer(
            compensation_step, scope=list(scope), item=target.context_item, predecessor=target.id
        )
        pointer.extensions[fx.COMPENSATES] = target.id
        pointer.extensions[fx.CHAIN] = targets[1:]

    # -- cancelling and finishing ------------------------------------------------------------
    def cancel_active(self) -> None:
        """Cancel every pointer still active in the instance."""
        self.cancel_all(self.instance.pointers if self.active is None else self.active.values())

    def cancel_all(self, pointers: Iterable[ExecutionPointer]) -> None:
        for pointer in list(pointers):
            if pointer.active:
                self.cancel(pointer)

    def cancel(self, pointer: ExecutionPointer) -> None:
        self.change(pointer.id)
        pointer.status = PointerStatus.CANCELLED
        pointer.active = False
        self.end(pointer.id)
        pointer.end_time = self.now
        self.close_subscription(pointer)
        if (
            pointer.event_name == CHILD_FINISHED_EVENT
            and pointer.event_key
            and not pointer.event_published  # else the child has finished
        ):
            self.terminate_child(pointer.event_key)

    def terminate_child(self, child_id: str) -> None:
        """Ask for the child workflow a cancelled sub-workflow step waited for to be
        terminated (the parent close policy of a terminated parent, applied to the step):
        stored with the parent's write, so it is not lost, and delivered by the host, which
        leaves the child alone when it finished meanwhile or has another parent."""
        event = Event(
            name=TERMINATE_CHILD_EVENT,
            key=child_id,
            data={"parent_workflow_id": self.instance.id},
            time=self.now,
        )
        if self.outbox:
            self.outbox.append(event)
        else:
            self.outbox = [event]

    def finish(self, status: WorkflowStatus, event: LifecycleEventType, message: Any) -> None:
        self.instance.status = status
        self.instance.complete_time = self.now
        self.instance.next_execution = None
        self.finished = status
        self.emit(event, None, None if message is None else str(message))

    # -- helpers -----------------------------------------------------------------------------
    def new_pointer(
        self, step_id: int, *, scope: list[str], item: Any, predecessor: str | None
    ) -> ExecutionPointer:
        instance = self.instance
        step = self.definition.step(step_id)
        pointer = ExecutionPointer(
            step_id=step_id,
            id=_pointer_id(),
            step_name=step.display_name,
            scope=list(scope),
            context_item=item,
            predecessor_id=predecessor,
        )
        if step.metadata.get("hidden") is True:
            # Recorded on the pointer: readers of the store have no definition to look at.
            pointer.extensions[INTERNAL_POINTER] = True
        instance.pointers.append(pointer)
        if self.created:
            self.created.append(pointer)
        else:
            self.created = [pointer]
        # Inline (not ``change``): one call fewer for every step a workflow runs.
        if self.changed:
            self.changed.add(pointer.id)
        else:
            self.changed = {pointer.id}
        if scope:
            # The container starting it is active (found without a walk), but for a
            # compensation started in a finished saga's scope.
            parent = (self.active or {}).get(scope[0]) or instance.pointer(scope[0])
            parent.children.append(pointer.id)
            self.change(parent.id)
        return pointer

    def emit(
        self,
        event_type: LifecycleEventType,
        pointer: ExecutionPointer | None,
        message: str | None = None,
    ) -> None:
        if self.announce:
            event = lifecycle_event(self.instance, event_type, pointer, self.now, message)
            if self.events:
                self.events.append(event)
            else:
                self.events = [event]
