"""The workflow executor: runs one pass over an instance.

A pass runs every runnable pointer; pointers that become runnable while it goes (the next
step of a sequence, the branches a container starts, a container whose branches finished)
run in the same pass. Pointers runnable at the same time run concurrently, bounded by
``max_parallel_steps``. Every state change is persisted (with the revision check) before the
steps it makes runnable start, so a crash loses at most the steps that were running.

A plain sequence takes a lean path: when a step's result makes exactly its successor runnable
and no other step is running, the successor runs in the same task once that result (and the
successor's start) is stored, without a new task or a round through the flusher.

Long workflows cost the same per step as short ones: a pass keeps the active pointers apart
and never walks the finished ones again, and the engine's container steps (``while_do``,
``for_each``, ``if_do``, ``parallel``, ``decide``) run at once without storing their start
(they only compute their result), so a loop's round is one write: the body's result with the
container's next round and the next body step's start.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel
import attrs

from wfe_core.engine import failures as fx
from wfe_core.engine import pointers as px
from wfe_core.engine.data import call_flexible, merge_into, set_field
from wfe_core.engine.middleware import StepMiddleware, run_step_middleware
from wfe_core.models.definition import ErrorBehaviorKind
from wfe_core.models.event import EventSubscription
from wfe_core.models.instance import INTERNAL_POINTER, ExecutionError, ExecutionPointer, utcnow
from wfe_core.models.lifecycle import LifecycleEvent, LifecycleEventType
from wfe_core.models.status import PointerStatus, WorkflowStatus
from wfe_core.primitives import containers
from wfe_core.results import ExecutionResult
from wfe_core.step import StepContext

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from anyio.abc import TaskGroup

    from wfe_core.models.definition import StepDefinition, WorkflowDefinition
    from wfe_core.models.instance import WorkflowInstance
    from wfe_core.runtime import HostContext
    from wfe_core.step import StepBody

logger = logging.getLogger("wfe_core.engine")

#: ``pointer.extensions`` key: the id of the pointer's open event subscription.
SUBSCRIPTION_ID = "subscription_id"
#: Seconds a sequence of steps runs on the lean path before it lets other tasks run.
_FAIR_SLICE = 0.005
#: The engine's container steps: they only compute their result from their inputs and their
#: state (no I/O, no waiting), so a pass runs them without storing their start first, and
#: their result is stored with the next write (a loop's round costs one write, not two). A
#: crash before that write runs them again, as any step whose result was not stored.
_PRIMITIVES = frozenset(
    {
        containers.Sequence,
        containers.If,
        containers.While,
        containers.ForEach,
        containers.Decide,
        containers.When,
    }
)
#: At most this many primitive runs in a row before a write (a bound, not a limit users meet).
_MAX_PRIMITIVE_RUNS = 256
#: Subscriptions with no effective date see every stored event of their name and key.
_BEGINNING = datetime.min.replace(tzinfo=UTC)


def _pointer_id() -> str:
    """A new random pointer id, like :func:`~wfe_core.models.new_id` (128 random bits as 32
    hex digits) without the cost of building a ``uuid.UUID``."""
    return os.urandom(16).hex()


class _Unguarded(contextlib.AbstractAsyncContextManager[None]):
    async def __aexit__(self, *exc_info: object) -> None:
        return None


_UNGUARDED = _Unguarded()


class PassEnvironment(Protocol):
    """What the executor needs from the host running it."""

    @property
    def host_context(self) -> HostContext:
        """Given to steps as ``ctx.host``."""
        ...

    async def persist(
        self,
        instance: WorkflowInstance,
        *,
        subscriptions: Sequence[EventSubscription],
        errors: Sequence[ExecutionError],
        closed_subscriptions: Sequence[str],
        changed_pointers: Collection[str],
    ) -> None:
        """Store ``instance`` (revision-checked) with new subscriptions and errors, then close
        ``closed_subscriptions``; ``changed_pointers`` are the pointers changed since the last
        call (see ``PersistenceProvider.persist_workflow``). Raises ConcurrencyError for a
        stale writer."""
        ...

    async def publish(self, event: LifecycleEvent) -> None:
        """Publish a lifecycle event."""
        ...

    def wants_lifecycle_events(self) -> bool:
        """Whether a lifecycle event published now may reach anyone (else none is built)."""
        ...

    def create_body(self, step: StepDefinition) -> StepBody:
        """A new body for one run of ``step`` (hosts may inject dependencies)."""
        ...


@attrs.frozen
class _Failure:
    error: BaseException
    trace: str


class WorkflowExecutor:
    """Runs passes over workflow instances for a host."""

    def __init__(
        self,
        environment: PassEnvironment,
        *,
        max_parallel_steps: int = 64,
        step_middleware: Sequence[StepMiddleware] = (),
    ) -> None:
        self.environment = environment
        self.max_parallel_steps = max_parallel_steps
        self.step_middleware = step_middleware

    async def run_pass(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run everything runnable in ``instance`` until nothing is, or ``should_stop()``
        (then running steps finish and nothing new starts). ``instance`` is updated in place
        and persisted; its ``next_execution`` says when it next has work."""
        await _Pass(self, instance, definition, should_stop).run()

    async def fail_workflow(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        message: str,
        *,
        error_type: str | None = None,
    ) -> None:
        """Fail ``instance`` without running a step, recording ``message`` as its error (for
        a workflow no pass can run, such as one whose stored data does not fit its data
        type). Persisted and announced like a pass's last write."""
        await _Pass(self, instance, definition, lambda: True).fail(message, error_type)


class _Pass:
    def __init__(
        self,
        executor: WorkflowExecutor,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        should_stop: Callable[[], bool],
    ) -> None:
        self.env = executor.environment
        self.middleware = executor.step_middleware
        self.instance = instance
        self.definition = definition
        self.should_stop = should_stop
        self.max_parallel = executor.max_parallel_steps
        # No yield when it is free (most of the time): a sequence takes it once per step.
        self.lock = anyio.Lock(fast_acquire=True)
        self.running: dict[str, anyio.CancelScope] = {}
        self.timer: anyio.CancelScope | None = None
        #: Set when a step finished: the flusher stores results and starts what is runnable.
        self.kick = anyio.Event()
        self.flusher_alive = False
        self.dirty = False
        self.subscriptions: list[EventSubscription] = []
        self.errors: list[ExecutionError] = []
        self.closed_subscriptions: list[str] = []
        self.events: list[LifecycleEvent] = []
        #: Ids of the pointers changed since the last write (see ``changed_pointers``).
        self.changed: set[str] = set()
        #: Pointers created by the result being applied (the lean path looks at them).
        self.created: list[ExecutionPointer] = []
        self.log_extra = {"workflow_id": instance.id, "definition_id": definition.id}
        #: When the lean path last let other tasks run (see _FAIR_SLICE).
        self.yielded = time.monotonic()
        #: The active pointers by id, in the instance's order: all that the pass's searches
        #: for runnable pointers look at, so a step costs the same however many finished
        #: pointers the instance holds. Pointers only ever go inactive (dropped lazily, see
        #: ``_active``) and new ones are appended at the end, so the order stays right.
        self.live: dict[str, ExecutionPointer] = {p.id: p for p in instance.pointers if p.active}
        #: How many active pointers each container has inside it (at any depth), kept as
        #: pointers are created and end: a container's "busy" costs the same with 10,000
        #: branches as with one.
        self.inside: collections.Counter[str] = collections.Counter(
            container for p in self.live.values() for container in p.scope
        )
        #: The active pointers that may have a time set (``sleep_until``): the only ones the
        #: timer looks at. The pass adds those it gives a time; dropped when they end.
        self.timed: dict[str, ExecutionPointer] = {
            p.id: p for p in self.live.values() if p.sleep_until is not None
        }
        #: The active container pointers (the definition's ``_PRIMITIVES``), in order.
        self.containers: dict[str, ExecutionPointer] = {}
        #: Ids of the pointers the pass ended since ``_active`` last dropped them.
        self.ended: list[str] = []
        #: The definition's container steps (see ``_PRIMITIVES``), by id.
        self.primitive_steps = frozenset(
            step.id for step in definition.steps if step.body in _PRIMITIVES
        )
        self.containers.update(
            (p.id, p) for p in self.live.values() if p.step_id in self.primitive_steps
        )

    def _active_dropped(self) -> None:
        live = self.live
        inside = self.inside
        for pointer_id in self.ended:
            pointer = live.pop(pointer_id, None)
            if pointer is not None:
                for container in pointer.scope:
                    inside[container] -= 1
                self.timed.pop(pointer_id, None)
                self.containers.pop(pointer_id, None)
        self.ended.clear()

    def _busy(self) -> set[str]:
        """Ids of the containers with an active pointer inside them (as
        ``pointers.busy_containers``), from counts kept as pointers start and end."""
        self._active_dropped()
        return {container for container, count in self.inside.items() if count > 0}

    def _active(self) -> list[ExecutionPointer]:
        """The active pointers, in order (those the pass ended since are dropped here; one
        ended by other means is still listed, which the searches allow: they check
        ``active``)."""
        self._active_dropped()
        return list(self.live.values())

    # -- the pass ----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.instance.status != WorkflowStatus.RUNNABLE:
            return
        if not self.instance.pointers:
            self._new_pointer(self.definition.start_step, scope=[], item=None, predecessor=None)
            self.dirty = True
        while True:
            async with anyio.create_task_group() as tg:
                async with self.lock:
                    alone = await self._start_runnable(tg, inline=True)
                if alone is not None:
                    await self._run_pointer(tg, *alone)
            # Something may have become due while the last steps ran (a short retry).
            if (
                not self._may_continue()
                or next(px.runnable_among(self._active(), utcnow(), self._busy()), None) is None
            ):
                break
        async with self.lock:
            self._settle()
            due = (
                px.next_execution_among(self._active(), utcnow(), self._busy())
                if self.instance.status == WorkflowStatus.RUNNABLE
                else None
            )
            if due != self.instance.next_execution:
                self.instance.next_execution = due
                self.dirty = True
            await self._flush()

    async def fail(self, message: str, error_type: str | None) -> None:
        if self.instance.status.is_finished:
            return
        self.errors.append(
            ExecutionError(
                workflow_id=self.instance.id,
                pointer_id=None,
                message=message,
                error_type=error_type,
                time=utcnow(),
            )
        )
        self._finish(WorkflowStatus.FAILED, LifecycleEventType.WORKFLOW_FAILED, message)
        self.dirty = True
        await self._flush()

    def _may_continue(self) -> bool:
        return self.instance.status == WorkflowStatus.RUNNABLE and not self.should_stop()

    async def _start_runnable(
        self, tg: TaskGroup, *, inline: bool = False
    ) -> tuple[ExecutionPointer, anyio.CancelScope] | None:
        """Start the runnable pointers not running yet, as many as ``max_parallel_steps``
        allows (the others start as running steps end); call with the lock held. With
        ``inline``, a pointer that starts alone is returned for the caller to run in its own
        task (after releasing the lock) instead of in a new one."""
        if self.primitive_steps and not self.middleware:
            await self._run_primitives()
        self._settle()
        started: list[tuple[ExecutionPointer, anyio.CancelScope]] = []
        if self._may_continue():
            now = utcnow()
            room = self.max_parallel - len(self.running)
            for pointer in px.runnable_among(self._active(), now, self._busy()):
                if room <= 0:
                    break
                if pointer.id in self.running:
                    continue
                started.append((pointer, self._mark_started(pointer, now)))
                room -= 1
            if started:
                # Due while steps run: a crash mid-pass leaves the instance due, so the
                # scheduler picks it up again (and the stored attempt counts this run).
                self._keep_due(now)
                self.dirty = True
        if started or self.running:
            await self._flush()
        # Else the pass is ending: its last write (with the next due time) stores the rest.
        alone = inline and len(started) == 1 and len(self.running) == 1
        for pointer, scope in started[alone:]:
            tg.start_soon(self._run_pointer, tg, pointer, scope)
        if len(self.running) > 1 and not self.flusher_alive:
            # Steps running side by side: one task stores their results as they come. (A
            # step running alone does that itself when it ends.)
            self.flusher_alive = True
            tg.start_soon(self._flusher, tg)
        self._arm_timer(tg)
        return started[0] if alone else None

    async def _run_primitives(self) -> None:
        """Run the runnable container steps at once, in this task, without storing their
        start (see ``_PRIMITIVES``); what they start is started by the caller with them.
        Not with step middleware, which may want to see every step run as any other."""
        for _ in range(_MAX_PRIMITIVE_RUNS):
            self._settle()
            if not self._may_continue():
                return
            self._active_dropped()
            # The containers alone (kept apart), then whether one can run: a wide for_each
            # has thousands of pending steps and no runnable container while they run.
            live = self.live
            candidates = [
                p
                for p in self.containers.values()
                if p.active
                and p.id not in self.running
                # A container whose last child is active is busy: known without the walk.
                and not (p.children and getattr(live.get(p.children[-1]), "active", False))
            ]
            if not candidates:
                return
            now = utcnow()
            busy = self._busy()
            pointer = next(
                (
                    p
                    for p in candidates
                    if (t := px.ready_time(p, busy, now)) is not None and t <= now
                ),
                None,
            )
            if pointer is None:
                return
            step = self.definition.step(pointer.step_id)
            scope = self._mark_started(pointer, now)
            outcome = await self._execute(pointer, step, scope)
            self.running.pop(pointer.id, None)
            self.dirty = True
            if outcome is None or not pointer.active or pointer.status != PointerStatus.RUNNING:
                continue
            self.created = []
            self._apply(pointer, step, outcome)

    def _keep_due(self, now: datetime) -> None:
        """Make the instance due by ``now``. A due time already past stays as it is: the
        instance is as due, and its stored head need not change with every step."""
        due = self.instance.next_execution
        if due is None or due > now:
            self.instance.next_execution = now

    def _mark_started(self, pointer: ExecutionPointer, now: datetime) -> anyio.CancelScope:
        self.changed.add(pointer.id)
        pointer.status = PointerStatus.RUNNING
        pointer.sleep_until = None
        pointer.attempt += 1
        if pointer.start_time is None:
            pointer.start_time = now
        scope = anyio.CancelScope()
        self.running[pointer.id] = scope
        self._emit(LifecycleEventType.STEP_STARTED, pointer)
        return scope

    def _arm_timer(self, tg: TaskGroup) -> None:
        """While steps run, wake the pass when a sleeping pointer falls due, so a short
        sleep or retry in one branch does not wait for a long step in another."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.running or not self._may_continue():
            return  # the pass is ending; the host's scheduler wakes the instance
        now = utcnow()
        self._active_dropped()
        # Only a pointer with a time set can fall due later: look at those alone (a wide
        # for_each has thousands of pending pointers and wakes this on every flush).
        timed = [
            p
            for p in self.timed.values()
            if p.active and p.sleep_until is not None and p.id not in self.running
        ]
        if not timed:
            return
        busy = self._busy()
        times = [t for p in timed if (t := px.ready_time(p, busy, now)) is not None and t > now]
        if times:
            self.timer = anyio.CancelScope()
            tg.start_soon(self._wake_at, tg, self.timer, min(times))

    async def _wake_at(self, tg: TaskGroup, scope: anyio.CancelScope, due: datetime) -> None:
        with scope:
            await anyio.sleep(max((due - utcnow()).total_seconds(), 0.0) + 0.001)
            async with self.lock:
                if self.timer is scope:
                    self.timer = None
                await self._start_runnable(tg)

    def _settle(self) -> None:
        """Complete the workflow when no pointer is active any more."""
        if self.instance.status != WorkflowStatus.RUNNABLE:
            return
        # The oldest active pointer comes first once the ended ones are dropped: cheap.
        self._active_dropped()
        if any(p.active for p in self.live.values()):
            return
        failed = [p for p in self.instance.pointers if fx.FAIL_AFTER_COMPENSATION in p.extensions]
        if failed:
            self._finish(WorkflowStatus.FAILED, LifecycleEventType.WORKFLOW_FAILED, failed[0].error)
        else:
            self._finish(WorkflowStatus.COMPLETE, LifecycleEventType.WORKFLOW_COMPLETED, None)

    async def _flush(self) -> None:
        if not self.dirty:
            return
        subscriptions, self.subscriptions = self.subscriptions, []
        errors, self.errors = self.errors, []
        closed, self.closed_subscriptions = self.closed_subscriptions, []
        events, self.events = self.events, []
        changed, self.changed = self.changed, set()
        # A running step's body may change its own pointer (ctx.pointer) before it returns:
        # such a pointer may differ from what is stored, so it is listed too.
        changed.update(self.running)
        await self.env.persist(
            self.instance,
            subscriptions=subscriptions,
            errors=errors,
            closed_subscriptions=closed,
            changed_pointers=changed,
        )
        self.dirty = False
        for event in events:
            await self.env.publish(event)

    # -- one step run ------------------------------------------------------------------------
    async def _run_pointer(
        self, tg: TaskGroup, pointer: ExecutionPointer, scope: anyio.CancelScope
    ) -> None:
        while True:
            step = self.definition.step(pointer.step_id)
            outcome = await self._execute(pointer, step, scope)
            following: tuple[ExecutionPointer, anyio.CancelScope] | None
            async with self._guard():
                self.running.pop(pointer.id, None)
                # The body may have changed its pointer (ctx.pointer), whatever came of it.
                self.changed.add(pointer.id)
                if outcome is None or not pointer.active or pointer.status != PointerStatus.RUNNING:
                    following = await self._after_run(tg)
                else:
                    self.created = []
                    self._apply(pointer, step, outcome)
                    self.dirty = True
                    successor = self._sole_successor(pointer)
                    if successor is None:
                        following = await self._after_run(tg)
                    else:
                        # The lean path: store the result (with the successor started), then
                        # run the successor in this task, without the flusher and a new task.
                        now = utcnow()
                        following = (successor, self._mark_started(successor, now))
                        self._keep_due(now)
                        await self._flush()
            if following is None:
                return
            pointer, scope = following
            if time.monotonic() - self.yielded > _FAIR_SLICE:
                # Steps that never wait (and a store that never does either) would keep
                # every other task of the host waiting until the pass ends.
                await anyio.lowlevel.checkpoint()
                self.yielded = time.monotonic()

    async def _after_run(self, tg: TaskGroup) -> tuple[ExecutionPointer, anyio.CancelScope] | None:
        """A step's run ended (call with the lock held): the flusher stores its result and
        starts what it made runnable, or, with no flusher, this task does; a step it starts
        alone (the next round of a loop) is returned for this task to run."""
        if self.flusher_alive:
            self.kick.set()
            return None
        return await self._start_runnable(tg, inline=True)

    def _guard(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """The pass's lock, or nothing while no other task of the pass can touch its state
        (no flusher, no timer: a step running alone, as in a plain sequence)."""
        if self.flusher_alive or self.timer is not None:
            return self.lock
        return _UNGUARDED

    def _sole_successor(self, pointer: ExecutionPointer) -> ExecutionPointer | None:
        """The pointer the result just applied to ``pointer`` created, when it is the only
        one that can run now: ``pointer`` completed, no other step runs, and the new pointer
        is in ``pointer``'s scope (so the containers around them stay busy; pointers that
        fall due meanwhile are the timer's)."""
        if (
            len(self.created) != 1
            or self.running
            or pointer.active
            or pointer.status != PointerStatus.COMPLETE
            or not self._may_continue()
        ):
            return None
        (successor,) = self.created
        if successor.scope != pointer.scope or successor.status != PointerStatus.PENDING:
            return None
        return successor

    async def _flusher(self, tg: TaskGroup) -> None:
        """Store results and start what they made runnable. Results that arrive while a store
        is under way are stored together by the next one, so many steps finishing at once
        (a wide ``for_each``) cost a few writes, not one each."""
        while True:
            await self.kick.wait()
            self.kick = anyio.Event()
            async with self.lock:
                await self._start_runnable(tg)
                if not self.running:
                    self.flusher_alive = False
                    return

    async def _execute(
        self, pointer: ExecutionPointer, step: StepDefinition, scope: anyio.CancelScope
    ) -> ExecutionResult | _Failure | None:
        """Run the step; ``None`` when it was cancelled (abandoned by the workflow)."""
        with scope:
            try:
                body = self.env.create_body(step)
                ctx = StepContext(
                    workflow=self.instance,
                    definition=self.definition,
                    step=step,
                    pointer=pointer,
                    host=self.env.host_context,
                    cancellation=scope,
                    attempt=pointer.attempt,
                )
                for name, mapping in step.inputs.items():
                    setattr(body, name, call_flexible(mapping, self.instance.data, ctx))
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "running step %s", step.display_name, extra=self._extra(step, pointer)
                    )
                if self.middleware:
                    result = await run_step_middleware(self.middleware, ctx, lambda: body.run(ctx))
                else:
                    result = await body.run(ctx)
                if not isinstance(result, ExecutionResult):
                    raise TypeError(
                        f"step {step.display_name} returned {type(result).__name__}, "
                        "not an ExecutionResult"
                    )
                if result.proceed:
                    self._apply_outputs(body, step, result)
                return result
            except Exception as exc:
                # Info, not warning: the step's error behaviour decides whether this matters
                # (the traceback is kept in the stored ExecutionError).
                logger.info(
                    "step %s failed: %r", step.display_name, exc, extra=self._extra(step, pointer)
                )
                return _Failure(exc, traceback.format_exc())
        return None

    def _extra(self, step: StepDefinition, pointer: ExecutionPointer) -> dict[str, Any]:
        return {**self.log_extra, "step_id": step.id, "pointer_id": pointer.id}

    def _apply_outputs(self, body: StepBody, step: StepDefinition, result: ExecutionResult) -> None:
        if self.instance.data is None and (step.outputs or result.output):
            self.instance.data = {}
        for name, mapping in step.outputs.items():
            set_field(self.instance.data, name, call_flexible(mapping, body, self.instance.data))
        if result.output:
            merge_into(self.instance.data, result.output)

    # -- applying a result -------------------------------------------------------------------
    def _apply(
        self, pointer: ExecutionPointer, step: StepDefinition, outcome: ExecutionResult | _Failure
    ) -> None:
        if isinstance(outcome, _Failure):
            self._fail_step(pointer, step, outcome)
            return
        result = outcome
        now = utcnow()
        pointer.error = None
        if result.event_name is None:
            self._close_subscription(pointer)
        if result.end_workflow_requested:
            self._complete_pointer(pointer, result, now)
            for other in self._active():
                if other.active:
                    self._cancel(other, now)
            self._finish(WorkflowStatus.COMPLETE, LifecycleEventType.WORKFLOW_COMPLETED, None)
        elif result.proceed:
            self._complete_pointer(pointer, result, now)
            self._after_complete(pointer, step, result)
        elif result.branch_values is not None:
            pointer.attempt = 0
            pointer.persistence_data = result.persistence_data
            scope = [pointer.id, *pointer.scope]
            for value in result.branch_values:
                for child in step.children:
                    self._new_pointer(child, scope=scope, item=value, predecessor=None)
        elif result.event_name is not None:
            pointer.attempt = 0
            self._subscribe(pointer, result, now)
        elif result.sleep_for is not None:
            pointer.attempt = 0
            pointer.status = PointerStatus.SLEEPING
            pointer.sleep_until = now + result.sleep_for
            self.timed[pointer.id] = pointer
            pointer.persistence_data = result.persistence_data
        else:
            pointer.attempt = 0
            pointer.status = PointerStatus.PENDING
            pointer.persistence_data = result.persistence_data

    def _complete_pointer(
        self, pointer: ExecutionPointer, result: ExecutionResult, now: datetime
    ) -> None:
        pointer.status = (
            PointerStatus.COMPENSATED
            if pointer.extensions.get(fx.COMPENSATED)
            else PointerStatus.COMPLETE
        )
        pointer.active = False
        self.ended.append(pointer.id)
        pointer.end_time = now
        pointer.outcome = result.outcome_value
        self._emit(LifecycleEventType.STEP_COMPLETED, pointer)

    def _after_complete(
        self, pointer: ExecutionPointer, step: StepDefinition, result: ExecutionResult
    ) -> None:
        target_id = pointer.extensions.get(fx.COMPENSATES)
        if target_id is not None:
            # A compensation finished: mark what it undid, then undo the next one.
            target = self.instance.pointer(target_id)
            target.status = PointerStatus.COMPENSATED
            self.changed.add(target.id)
            self._start_compensation(list(pointer.extensions.get(fx.CHAIN, [])), pointer.scope)
            return
        for route in step.outcomes:
            if route.matches(result.outcome_value):
                self._new_pointer(
                    route.next_step,
                    scope=list(pointer.scope),
                    item=pointer.context_item,
                    predecessor=pointer.id,
                )

    def _subscribe(self, pointer: ExecutionPointer, result: ExecutionResult, now: datetime) -> None:
        self._close_subscription(pointer)
        assert result.event_name is not None
        assert result.event_key is not None
        pointer.status = PointerStatus.WAITING_FOR_EVENT
        pointer.event_name = result.event_name
        pointer.event_key = result.event_key
        pointer.event_effective_date = result.event_effective_date
        pointer.event_published = False
        pointer.event_data = None
        pointer.sleep_until = None if result.event_timeout is None else now + result.event_timeout
        self.timed[pointer.id] = pointer
        subscription = EventSubscription(
            workflow_id=self.instance.id,
            pointer_id=pointer.id,
            step_id=pointer.step_id,
            event_name=result.event_name,
            event_key=result.event_key,
            subscribe_as_of=result.event_effective_date or _BEGINNING,
            expires_at=pointer.sleep_until,
        )
        pointer.extensions[SUBSCRIPTION_ID] = subscription.id
        self.subscriptions.append(subscription)

    def _close_subscription(self, pointer: ExecutionPointer) -> None:
        subscription_id = pointer.extensions.pop(SUBSCRIPTION_ID, None)
        if subscription_id is not None:
            self.closed_subscriptions.append(subscription_id)

    # -- failures ----------------------------------------------------------------------------
    def _fail_step(
        self, pointer: ExecutionPointer, step: StepDefinition, failure: _Failure
    ) -> None:
        now = utcnow()
        error = failure.error
        message = f"{type(error).__name__}: {error}"
        self.errors.append(
            ExecutionError(
                workflow_id=self.instance.id,
                pointer_id=pointer.id,
                message=message,
                step_id=step.id,
                step_name=step.display_name,
                error_type=f"{type(error).__module__}.{type(error).__qualname__}",
                traceback=failure.trace,
                time=now,
            )
        )
        pointer.error = message
        failures = int(pointer.extensions.get(fx.FAILURES, 0)) + 1
        pointer.extensions[fx.FAILURES] = failures
        # A re-run subscribes afresh (a retried sub-workflow starts a new child).
        self._close_subscription(pointer)
        pointer.event_name = pointer.event_key = None
        pointer.event_published = False
        pointer.event_data = None
        self._emit(LifecycleEventType.WORKFLOW_ERROR, pointer, message)

        in_saga = fx.saga_of(self.instance, self.definition, pointer) is not None
        is_compensation = fx.COMPENSATES in pointer.extensions
        behavior = fx.chosen_behavior(self.definition, step, in_saga, is_compensation)
        if behavior.kind == ErrorBehaviorKind.RETRY:
            if behavior.max_retries is None or failures <= behavior.max_retries:
                pointer.status = PointerStatus.SLEEPING
                pointer.sleep_until = now + behavior.retry_delay(failures)
                self.timed[pointer.id] = pointer
                return
            behavior = fx.fallback_behavior(self.definition, in_saga, is_compensation)
        kind = behavior.kind
        if kind == ErrorBehaviorKind.SUSPEND:
            pointer.status = PointerStatus.PENDING
            self.instance.status = WorkflowStatus.SUSPENDED
            self._emit(LifecycleEventType.WORKFLOW_SUSPENDED, None, message)
        elif kind == ErrorBehaviorKind.COMPENSATE:
            self._compensate(pointer, now)
        else:
            self._end_failed_pointer(pointer, now)
            for other in self._active():
                if other.active:
                    self._cancel(other, now)
            if kind == ErrorBehaviorKind.TERMINATE:
                self._finish(
                    WorkflowStatus.TERMINATED, LifecycleEventType.WORKFLOW_TERMINATED, message
                )
            else:
                self._finish(WorkflowStatus.FAILED, LifecycleEventType.WORKFLOW_FAILED, message)

    def _end_failed_pointer(self, pointer: ExecutionPointer, now: datetime) -> None:
        self.changed.add(pointer.id)
        pointer.status = PointerStatus.FAILED
        pointer.active = False
        self.ended.append(pointer.id)
        pointer.end_time = now

    def _compensate(self, failed: ExecutionPointer, now: datetime) -> None:
        saga = fx.saga_of(self.instance, self.definition, failed)
        if saga is not None:
            members = px.in_scope(self.instance, saga.id)
            scope = [saga.id, *saga.scope]
            saga.extensions[fx.COMPENSATED] = True
            self.changed.add(saga.id)
        else:
            members = list(self.instance.pointers)
            scope = []
            failed.extensions[fx.FAIL_AFTER_COMPENSATION] = True
        self._end_failed_pointer(failed, now)
        for member in members:
            if member.active:
                self._cancel(member, now)
        targets = fx.compensation_targets(self.instance, self.definition, failed, members)
        logger.info(
            "compensating %d step(s) after %s failed",
            len(targets),
            failed.step_name,
            extra={**self.log_extra, "pointer_id": failed.id},
        )
        self._start_compensation(targets, scope)

    def _start_compensation(self, targets: list[str], scope: list[str]) -> None:
        if not targets:
            return
        target = self.instance.pointer(targets[0])
        compensation_step = self.definition.step(target.step_id).compensation_step_id
        assert compensation_step is not None
        pointer = self._new_pointer(
            compensation_step, scope=list(scope), item=target.context_item, predecessor=target.id
        )
        pointer.extensions[fx.COMPENSATES] = target.id
        pointer.extensions[fx.CHAIN] = targets[1:]

    def _cancel(self, pointer: ExecutionPointer, now: datetime) -> None:
        self.changed.add(pointer.id)
        pointer.status = PointerStatus.CANCELLED
        pointer.active = False
        self.ended.append(pointer.id)
        pointer.end_time = now
        self._close_subscription(pointer)
        scope = self.running.get(pointer.id)
        if scope is not None:
            scope.cancel()

    # -- helpers -----------------------------------------------------------------------------
    def _finish(self, status: WorkflowStatus, event: LifecycleEventType, message: Any) -> None:
        self.instance.status = status
        self.instance.complete_time = utcnow()
        self.instance.next_execution = None
        self._emit(event, None, None if message is None else str(message))
        level = logging.INFO if status == WorkflowStatus.COMPLETE else logging.WARNING
        logger.log(level, "workflow %s %s", self.instance.id, status, extra=self.log_extra)

    def _new_pointer(
        self, step_id: int, *, scope: list[str], item: Any, predecessor: str | None
    ) -> ExecutionPointer:
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
        self.instance.pointers.append(pointer)
        self.live[pointer.id] = pointer
        self.inside.update(pointer.scope)
        if step_id in self.primitive_steps:
            self.containers[pointer.id] = pointer
        self.created.append(pointer)
        self.changed.add(pointer.id)
        if scope:
            # The container starting it is active (found without a walk), but for a
            # compensation started in a finished saga's scope.
            parent = self.live.get(scope[0]) or self.instance.pointer(scope[0])
            parent.children.append(pointer.id)
            self.changed.add(parent.id)
        return pointer

    def _emit(
        self,
        event_type: LifecycleEventType,
        pointer: ExecutionPointer | None,
        message: str | None = None,
    ) -> None:
        if not self.env.wants_lifecycle_events():
            return
        self.events.append(
            LifecycleEvent(
                type=event_type,
                workflow_id=self.instance.id,
                definition_id=self.instance.definition_id,
                version=self.instance.version,
                reference=self.instance.reference,
                step_id=None if pointer is None else pointer.step_id,
                step_name=None if pointer is None else pointer.step_name,
                pointer_id=None if pointer is None else pointer.id,
                message=message,
            )
        )
