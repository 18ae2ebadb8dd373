"""Internal to the engine: one pass over an instance, scheduling its steps.

Which pointers run now, how many at once (``max_parallel_steps``), the timer that wakes the
pass when a sleeping pointer falls due, the flusher that stores results, and the lean path of
a plain sequence. The state changes themselves are :mod:`~wfe_core.engine._transitions`'s;
running a step body is :mod:`~wfe_core.engine._running`'s.

A pass runs every runnable pointer; pointers that become runnable while it goes (the next
step of a sequence, the branches a container starts, a container whose branches finished)
run in the same pass. Every state change is persisted (with the revision check) before the
steps it makes runnable start, so a crash loses at most the steps that were running.

A plain sequence takes a lean path: when a step's result makes exactly its successor runnable
and no other step is running, the successor runs in the same task once that result (and the
successor's start) is stored, without a new task or a round through the flusher.

Long workflows cost the same per step as short ones: a pass keeps the active pointers apart
(:class:`~wfe_core.engine._active.ActivePointers`) and never walks the finished ones again,
and the engine's container steps (``while_do``, ``for_each``, ``if_do``, ``parallel``,
``decide``, ``recur``) run at once without storing their start (they only compute their
result), so a loop's round is one write: the body's result with the container's next round
and the next body step's start (a recur's round two: it sleeps between rounds).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs

from wfe_core.engine import _failures as fx
from wfe_core.engine import _pointers as px
from wfe_core.engine import _transitions as tx
from wfe_core.engine._active import ActivePointers
from wfe_core.engine._running import run_step
from wfe_core.engine.middleware import inline_safe
from wfe_core.models._status import PointerStatus, WorkflowStatus
from wfe_core.primitives import _containers as containers
from wfe_core.primitives import _events as events
from wfe_core.primitives import _timers as timers
from wfe_core.providers._persistence import PointerWrite
from wfe_core.serialization import to_primitive

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from anyio.abc import TaskGroup

    from wfe_core._results import ExecutionResult
    from wfe_core.clock import Clock
    from wfe_core.engine._executor import PassEnvironment
    from wfe_core.engine.middleware import StepMiddleware
    from wfe_core.models._definition import StepDefinition, WorkflowDefinition
    from wfe_core.models._event import Event, EventSubscription
    from wfe_core.models._instance import ExecutionError, ExecutionPointer, WorkflowInstance
    from wfe_core.models._lifecycle import LifecycleEvent
    from wfe_core.providers._persistence import LivePart

    #: A body's result waiting to be applied: its pointer, its step and what came of it.
    _Returned = tuple[ExecutionPointer, StepDefinition, ExecutionResult | tx.StepFailure | None]

logger = logging.getLogger("wfe_core.engine")

#: Seconds a sequence of steps runs on the lean path before it lets other tasks run.
_FAIR_SLICE = 0.005
#: The engine's container steps and ``wait_for``: they only compute their result from their
#: inputs and their state (no I/O, no waiting), so a pass runs them without storing their
#: start first, and their result is stored with the next write (a loop's round costs one
#: write, not two; an event's delivery, the wait's result and the next step's start are one
#: write, and so are the step before a wait and the wait's subscription). A crash before
#: that write runs them again, as any step whose result was not stored.
_PRIMITIVES = frozenset(
    {
        containers.Sequence,
        containers.If,
        containers.While,
        containers.ForEach,
        containers.Decide,
        containers.When,
        events.WaitFor,
        # A recur's rounds: it only chooses between its branch, a sleep and going on, so a
        # round stores the body's start with the recur's result, not the recur's start too.
        timers.Recur,
    }
)
#: The engine's own step bodies that read no child ids of their pointer: a pass runs them
#: on a live pointer whose ``children`` hold only the last ids (``LivePart.children_start``);
#: any other body gets them all (the pass reads the rest first).
_OWN_BODIES = _PRIMITIVES | {timers.Delay, timers.Fork, timers.Schedule}
#: At most this many primitive runs in a row before a write (a bound, not a limit users meet).
_MAX_PRIMITIVE_RUNS = 256


class _Unguarded(contextlib.AbstractAsyncContextManager[None]):
    async def __aexit__(self, *exc_info: object) -> None:
        return None


_UNGUARDED = _Unguarded()


class Pass:
    """One pass over ``instance``: run what is runnable until nothing is or ``should_stop()``."""

    def __init__(
        self,
        environment: PassEnvironment,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        should_stop: Callable[[], bool],
        *,
        clock: Clock,
        max_parallel_steps: int,
        step_middleware: Sequence[StepMiddleware],
        live: LivePart | None = None,
    ) -> None:
        self.env = environment
        self.clock = clock
        self.middleware = step_middleware
        self.instance = instance
        self.definition = definition
        self.should_stop = should_stop
        self.max_parallel = max_parallel_steps
        # No yield when it is free (most of the time): a sequence takes it once per step.
        self.lock = anyio.Lock(fast_acquire=True)
        self.running: dict[str, anyio.CancelScope] = {}
        #: Steps whose bodies run in tasks of their own now (see ``_flush``).
        self.in_bodies = 0
        #: Results of bodies that returned, by pointer id, until their tasks apply them, or
        #: a write made meanwhile does (see ``_apply_returned``).
        self.returned: dict[str, _Returned] = {}
        self.timer: anyio.CancelScope | None = None
        #: The running backend's cancel scope class (see ``_new_scope``).
        self.scope_type: type[anyio.CancelScope] | None = None
        #: Set when a step finished: the flusher stores results and starts what is runnable.
        self.kick = anyio.Event()
        self.flusher_alive = False
        self.dirty = False
        # What the next write stores and what follows it.
        self.subscriptions: list[EventSubscription] = []
        self.errors: list[ExecutionError] = []
        self.closed_subscriptions: list[str] = []
        self.events: list[LifecycleEvent] = []
        #: Events to store with the next write (see ``Transition.outbox``).
        self.outbox: list[Event] = []
        #: Ids of the pointers changed since the last write (see ``changed_pointers``).
        self.changed: set[str] = set()
        #: Pointers created by the result last applied (the lean path looks at them).
        self.created: Sequence[ExecutionPointer] = ()
        self.log_extra = {"workflow_id": instance.id, "definition_id": definition.id}
        #: Whether lifecycle events may reach anyone (else none is built): asked again after
        #: each write, not for every transition (a step makes two or three).
        self.announce = environment.wants_lifecycle_events()
        #: When the lean path last let other tasks run (see _FAIR_SLICE).
        self.yielded = time.monotonic()
        #: The definition's container steps (see ``_PRIMITIVES``), by id.
        self.primitive_steps = frozenset(
            step.id for step in definition.steps if step.body in _PRIMITIVES
        )
        # Decided once per pass: every step middleware must allow it (see INLINE_SAFE).
        self.inline_primitives = bool(self.primitive_steps) and inline_safe(step_middleware)
        self.active = ActivePointers(instance, self.primitive_steps)
        #: The steps with a cancel condition: looked at after every step the pass applies.
        self.cancellable = [
            (step.id, step.cancel_condition)
            for step in definition.steps
            if step.cancel_condition is not None
        ]
        #: The steps whose bodies read finished pointers (``StepBody.reads_history``).
        self.history_steps = frozenset(
            step.id for step in definition.steps if getattr(step.body, "reads_history", False)
        )
        # A live part (see PersistenceProvider.get_live_part): ``instance.pointers`` holds
        # only some of the stored pointers, so writes name pointers by position. ``stored``:
        # how many are stored (``None``: the instance is whole, and writes are as ever).
        self.stored: int | None = None
        #: The stored position of each pointer held (live part only).
        self.positions: dict[str, int] = {}
        #: The pointers held, by id, and those not stored yet, in order (live part only).
        self.held: dict[str, ExecutionPointer] = {}
        self.unstored: list[ExecutionPointer] = []
        #: The held pointers whose ``children`` hold only their last ids, with how many
        #: were left out (``LivePart.children_start``; live part only).
        self.children_start: dict[str, int] = {}
        if live is not None and not live.whole:
            self.stored = live.stored_pointers
            self.positions = dict(live.positions)
            self.held = {p.id: p for p in instance.pointers}
            self.children_start = dict(live.children_start)

    # -- the pass ----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.instance.status != WorkflowStatus.RUNNABLE:
            return
        if not self.instance.pointers and not self.stored:
            self._take(tx.begin(self.instance, self.definition, self.clock.now()))
            self.dirty = True
        if self.cancellable:
            self._cancel_where_due()
        active = self.active
        while True:
            async with anyio.create_task_group() as tg:
                async with self.lock:
                    alone = await self._start_runnable(tg, inline=True)
                if alone is not None:
                    await self._run_pointer(tg, *alone)
            # Something may have become due while the last steps ran (a short retry).
            if (
                not self._may_continue()
                or next(px.runnable_among(active.listed(), self.clock.now(), active.busy()), None)
                is None
            ):
                break
        async with self.lock:
            await self._settle()
            due = (
                px.next_execution_among(active.listed(), self.clock.now(), active.busy())
                if self.instance.status == WorkflowStatus.RUNNABLE
                else None
            )
            if due != self.instance.next_execution:
                self.instance.next_execution = due
                self.dirty = True
            await self._flush(last=True)

    async def fail(self, message: str, error_type: str | None) -> None:
        transition = tx.fail_workflow(
            self.instance,
            self.definition,
            message,
            self.clock.now(),
            error_type=error_type,
            announce=self.announce,
        )
        if transition is None:
            return
        self._take(transition)
        self.dirty = True
        await self._flush(last=True)

    def _may_continue(self) -> bool:
        return self.instance.status == WorkflowStatus.RUNNABLE and not self.should_stop()

    # -- taking in transitions ---------------------------------------------------------------
    def _take(self, transition: tx.Transition) -> None:
        """Take in what ``transition`` left to do: track its pointers, abandon the steps it
        ended that still run, and keep what the next write stores and announces."""
        self.active.track(transition)
        self.changed.update(transition.changed)
        if transition.subscriptions:
            self.subscriptions.extend(transition.subscriptions)
        if transition.closed_subscriptions:
            self.closed_subscriptions.extend(transition.closed_subscriptions)
        if transition.errors:
            self.errors.extend(transition.errors)
        if transition.events:
            self.events.extend(transition.events)
        if transition.outbox:
            self.outbox.extend(transition.outbox)
        if self.stored is not None and transition.created:
            self.unstored.extend(transition.created)
            for pointer in transition.created:
                self.held[pointer.id] = pointer
        running = self.running
        if running:
            for pointer_id in transition.ended:
                scope = running.get(pointer_id)
                if scope is not None:
                    scope.cancel()
        status = transition.finished
        if status is not None:
            level = logging.INFO if status == WorkflowStatus.COMPLETE else logging.WARNING
            logger.log(level, "workflow %s %s", self.instance.id, status, extra=self.log_extra)

    def _apply(
        self,
        pointer: ExecutionPointer,
        step: StepDefinition,
        outcome: ExecutionResult | tx.StepFailure,
    ) -> None:
        transition = tx.apply_outcome(
            self.instance,
            self.definition,
            pointer,
            outcome,
            self.clock.now(),
            active=self.active.live,
            announce=self.announce,
            step=step,
        )
        if transition.compensating is not None:
            logger.info(
                "compensating %d step(s) after %s failed",
                transition.compensating,
                pointer.step_name,
                extra={**self.log_extra, "pointer_id": pointer.id},
            )
        self._take(transition)
        self.created = transition.created
        if self.cancellable and self._cancel_where_due():
            self.created = ()  # what the cancellation started is not the lean path's

    def _cancel_where_due(self) -> bool:
        """Cancel the pointers of the steps whose cancel condition holds now; whether any
        was. A condition that raises counts as false (and is logged)."""
        data = self.instance.data
        due: set[int] = set()
        for step_id, condition in self.cancellable:
            try:
                if condition(data):
                    due.add(step_id)
            except Exception:
                logger.warning(
                    "the cancel condition of step %s raised; taken as false",
                    step_id,
                    exc_info=True,
                    extra=self.log_extra,
                )
        if not due:
            return False
        transition = tx.cancel_steps(
            self.instance,
            self.definition,
            due,
            self.clock.now(),
            active=self.active.live,
            announce=self.announce,
        )
        if not transition.changed:
            return False
        self._take(transition)
        self.dirty = True
        return True

    async def _settle(self) -> None:
        """Complete the workflow when no pointer is active any more."""
        if self.instance.status != WorkflowStatus.RUNNABLE:
            return
        # The oldest active pointer comes first once the ended ones are dropped: cheap. (A
        # loop, not any() over a generator: this runs two or three times a step.)
        if self.active.ended:
            self.active.drop_ended()
        for pointer in self.active.live.values():
            if pointer.active:
                return
        await self._whole()  # settling looks at the finished pointers
        transition = tx.settle(
            self.instance,
            self.definition,
            self.clock.now(),
            active=self.active.live,
            announce=self.announce,
        )
        if transition is not None:
            self._take(transition)

    def _mark_started(self, pointer: ExecutionPointer, now: datetime) -> anyio.CancelScope:
        self.changed.add(pointer.id)
        event = tx.mark_started(self.instance, pointer, now, announce=self.announce)
        if event is not None:
            self.events.append(event)
        scope = self._new_scope()
        self.running[pointer.id] = scope
        return scope

    def _new_scope(self) -> anyio.CancelScope:
        """A cancel scope of the running backend. ``anyio.CancelScope()`` looks the backend
        up for every scope (about half of a scope's cost, and a pass makes one per step
        run); its class, known from the pass's first scope, makes the next ones directly."""
        scope_type = self.scope_type
        if scope_type is None:
            scope = anyio.CancelScope()
            self.scope_type = type(scope)
            return scope
        return scope_type()

    def _keep_due(self, now: datetime) -> None:
        """Make the instance due by ``now``. A due time already past stays as it is: the
        instance is as due, and its stored head need not change with every step."""
        due = self.instance.next_execution
        if due is None or due > now:
            self.instance.next_execution = now

    # -- scheduling --------------------------------------------------------------------------
    async def _start_runnable(
        self, tg: TaskGroup, *, inline: bool = False
    ) -> tuple[ExecutionPointer, anyio.CancelScope] | None:
        """Start the runnable pointers not running yet, as many as ``max_parallel_steps``
        allows (the others start as running steps end); call with the lock held. With
        ``inline``, a pointer that starts alone is returned for the caller to run in its own
        task (after releasing the lock) instead of in a new one."""
        if self.inline_primitives:
            await self._run_primitives()
        await self._settle()
        started: list[tuple[ExecutionPointer, anyio.CancelScope]] = []
        if self._may_continue():
            now = self.clock.now()
            room = self.max_parallel - len(self.running)
            for pointer in px.runnable_among(self.active.listed(), now, self.active.busy()):
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
        Only when every step middleware is marked inline-safe (``middleware.INLINE_SAFE``):
        any other may want to see every step run as any other."""
        active = self.active
        for _ in range(_MAX_PRIMITIVE_RUNS):
            await self._settle()
            if not self._may_continue():
                return
            if active.ended:
                active.drop_ended()
            # The containers alone (kept apart), then whether one can run: a wide for_each
            # has thousands of pending steps and no runnable container while they run.
            live = active.live
            candidates = [
                p
                for p in active.containers.values()
                if p.active
                and p.id not in self.running
                # A container whose last child is active is busy: known without the walk.
                and not (p.children and getattr(live.get(p.children[-1]), "active", False))
            ]
            if not candidates:
                return
            now = self.clock.now()
            busy = active.busy()
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
            scope = self._mark_started(pointer, now)
            step = self.definition.step(pointer.step_id)
            if self.stored is not None and pointer.step_id in self.history_steps:
                await self._whole()
            outcome = await run_step(
                self.env,
                self.middleware,
                self.instance,
                self.definition,
                pointer,
                step,
                scope,
                self.log_extra,
                inline=True,
            )
            self.running.pop(pointer.id, None)
            self.dirty = True
            if outcome is None or not pointer.active or pointer.status != PointerStatus.RUNNING:
                continue
            if self.stored is not None and _needs_history(pointer, outcome):
                await self._whole()
            self._apply(pointer, step, outcome)

    def _arm_timer(self, tg: TaskGroup) -> None:
        """While steps run, wake the pass when a sleeping pointer falls due, so a short
        sleep or retry in one branch does not wait for a long step in another."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.running or not self._may_continue():
            return  # the pass is ending; the host's scheduler wakes the instance
        # Only a pointer with a time set can fall due later: look at those alone (a wide
        # for_each has thousands of pending pointers and wakes this on every flush).
        if not self.active.timed:
            return
        timed = self.active.timed_waiting(self.running)
        if not timed:
            return
        now = self.clock.now()
        busy = self.active.busy()
        times = [t for p in timed if (t := px.ready_time(p, busy, now)) is not None and t > now]
        if times:
            self.timer = self._new_scope()
            tg.start_soon(self._wake_at, tg, self.timer, min(times))

    async def _wake_at(self, tg: TaskGroup, scope: anyio.CancelScope, due: datetime) -> None:
        with scope:
            # The wait is measured on the event loop's clock; the clock only says how long.
            await anyio.sleep(max((due - self.clock.now()).total_seconds(), 0.0) + 0.001)
            async with self.lock:
                if self.timer is scope:
                    self.timer = None
                await self._start_runnable(tg)

    # -- writes ------------------------------------------------------------------------------
    async def _flush(self, *, last: bool = False) -> None:
        """Store what changed since the last write; ``last``: the pass ends after it."""
        if self.returned:
            await self._apply_returned()
        if not self.dirty:
            return
        subscriptions, self.subscriptions = self.subscriptions, []
        errors, self.errors = self.errors, []
        closed, self.closed_subscriptions = self.closed_subscriptions, []
        events, self.events = self.events, []
        outbox, self.outbox = self.outbox, []
        changed, self.changed = self.changed, set()
        if subscriptions and closed:
            # Opened and closed again since the last write (a wait run in place, then
            # cancelled): neither stored nor closed, so no event is reopened for it.
            gone = set(closed)
            opened = {s.id for s in subscriptions}
            subscriptions = [s for s in subscriptions if s.id not in gone]
            closed = [c for c in closed if c not in opened]
        # A running step's body may change its own pointer (ctx.pointer) before it returns:
        # such a pointer may differ from what is stored, so it is listed too.
        changed.update(self.running)
        if self.stored is not None and self.instance.status.is_finished:
            # The write that finishes the workflow stores it whole (its waiters and workflow
            # middleware get the instance as stored).
            await self._whole()
            if self.returned:
                await self._apply_returned()  # returned while the history was read
        instance = view = self.instance
        if self.in_bodies:
            # Bodies running in other tasks may change the data while the write waits
            # before it is encoded (a lease renewed first): it stores the data as of now,
            # the data of the results it holds.
            view = attrs.evolve(instance, data=to_primitive(instance.data))
        stored = self.stored
        if stored is None:
            await self.env.persist(
                view,
                subscriptions=subscriptions,
                errors=errors,
                closed_subscriptions=closed,
                changed_pointers=changed,
                outbox=outbox,
                last=last,
            )
        else:
            positions = self.positions
            held = self.held
            added, self.unstored = self.unstored, []
            write = PointerWrite(
                stored,
                [(positions[i], held[i]) for i in changed if i in positions],
                added,
                self.children_start,
            )
            await self.env.persist(
                view,
                subscriptions=subscriptions,
                errors=errors,
                closed_subscriptions=closed,
                changed_pointers=changed,
                outbox=outbox,
                pointer_write=write,
                last=last,
            )
            for index, pointer in enumerate(added, stored):
                positions[pointer.id] = index
            self.stored = stored + len(added)
        instance.revision = view.revision
        self.dirty = False
        self.announce = self.env.wants_lifecycle_events()
        for event in events:
            await self.env.publish(event)

    async def _whole(self) -> None:
        """Make the instance whole (read the stored pointers a live part left out): for the
        rare paths that look at finished pointers. Call with the lock held (or alone)."""
        stored = self.stored
        if stored is None:
            return
        held = self.held
        pointers = await self.env.stored_pointers(self.instance.id, stored)
        for pointer in pointers:
            start = self.children_start.get(pointer.id)
            if start is not None:
                # The held one keeps its last ids (and those appended since): the stored
                # ones left out go before them.
                mine = held[pointer.id]
                mine.children[:0] = pointer.children[:start]
        self.children_start = {}
        self.instance.pointers = [*(held.get(p.id, p) for p in pointers), *self.unstored]
        self.stored = None
        self.positions = {}
        self.held = {}
        # Not stored yet: named in ``changed`` (created since the last write), as ever.
        self.unstored = []

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

    # -- one step run ------------------------------------------------------------------------
    async def _run_pointer(
        self, tg: TaskGroup, pointer: ExecutionPointer, scope: anyio.CancelScope
    ) -> None:
        while True:
            step = self.definition.step(pointer.step_id)
            if self.stored is not None and (
                pointer.step_id in self.history_steps
                or (pointer.id in self.children_start and step.body not in _OWN_BODIES)
            ):
                # A body that is not the engine's own may read all of ctx.pointer.children.
                async with self.lock:
                    await self._whole()
            self.in_bodies += 1
            try:
                outcome = await run_step(
                    self.env,
                    self.middleware,
                    self.instance,
                    self.definition,
                    pointer,
                    step,
                    scope,
                    self.log_extra,
                )
            finally:
                self.in_bodies -= 1
            # The body's changes to the data are in the instance now: a write made before
            # this task gets the lock applies its result too (see _apply_returned).
            self.returned[pointer.id] = (pointer, step, outcome)
            following: tuple[ExecutionPointer, anyio.CancelScope] | None
            async with self._guard():
                if self.returned.pop(pointer.id, None) is None:
                    # A write made while this task waited for the lock applied it.
                    following = await self._after_run(tg)
                else:
                    following = await self._applied(tg, pointer, step, outcome)
            if following is None:
                return
            pointer, scope = following
            if time.monotonic() - self.yielded > _FAIR_SLICE:
                # Steps that never wait (and a store that never does either) would keep
                # every other task of the host waiting until the pass ends.
                await anyio.lowlevel.checkpoint()
                self.yielded = time.monotonic()

    async def _applied(
        self,
        tg: TaskGroup,
        pointer: ExecutionPointer,
        step: StepDefinition,
        outcome: ExecutionResult | tx.StepFailure | None,
    ) -> tuple[ExecutionPointer, anyio.CancelScope] | None:
        """Apply the result of ``pointer``'s run (call with the lock held) and store it; the
        step to run next in this task, if any (see :meth:`_after_run`)."""
        self.running.pop(pointer.id, None)
        # The body may have changed its pointer (ctx.pointer), whatever came of it.
        self.changed.add(pointer.id)
        if outcome is None or not pointer.active or pointer.status != PointerStatus.RUNNING:
            return await self._after_run(tg)
        if self.stored is not None and _needs_history(pointer, outcome):
            await self._whole()
        self._apply(pointer, step, outcome)
        self.dirty = True
        successor = self._sole_successor(pointer)
        if successor is None:
            return await self._after_run(tg)
        # The lean path: store the result (with the successor started), then run the
        # successor in this task, without the flusher and a new task.
        now = self.clock.now()
        following = (successor, self._mark_started(successor, now))
        self._keep_due(now)
        await self._flush()
        return following

    async def _apply_returned(self) -> None:
        """Apply the results of the bodies that returned while their tasks wait for the lock
        (a write is about to be made): their changes to the data are in the instance
        already, so the write must store the results with them, or a step whose change was
        stored without its result would run again after a crash and change it twice."""
        while self.returned:
            pointer, step, outcome = self.returned.pop(next(iter(self.returned)))
            self.running.pop(pointer.id, None)
            self.changed.add(pointer.id)
            self.dirty = True
            if outcome is not None and pointer.active and pointer.status == PointerStatus.RUNNING:
                if self.stored is not None and _needs_history(pointer, outcome):
                    await self._whole()  # bodies returning meanwhile are applied too
                self._apply(pointer, step, outcome)

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
        if self.inline_primitives and successor.step_id in self.primitive_steps:
            # Run at once without storing its start (see _run_primitives): a step followed
            # by a wait stores its result and the wait's subscription in one write.
            return None
        return successor


def _needs_history(pointer: ExecutionPointer, outcome: ExecutionResult | tx.StepFailure) -> bool:
    """Whether applying ``outcome`` may look at finished pointers: a failure (a saga's
    compensation, settling it), a compensation that finished (what it undid), a saga run
    again after compensating."""
    if isinstance(outcome, tx.StepFailure):
        return True
    extensions = pointer.extensions
    return fx.COMPENSATES in extensions or fx.COMPENSATED in extensions
