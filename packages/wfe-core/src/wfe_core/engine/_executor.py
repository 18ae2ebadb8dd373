"""The workflow executor: runs one pass over an instance for a host.

It composes the engine's parts, each in its own internal module:

* :mod:`~wfe_core.engine._pass` -- one pass: which pointers run now and how many at once,
  the timer, the flusher that stores results, the lean path of a plain sequence;
* :mod:`~wfe_core.engine._running` -- running one step body (inputs, step middleware,
  outputs, cancellation);
* :mod:`~wfe_core.engine._transitions` -- the state changes a step's outcome makes, as pure
  functions of the instance, the definition, the outcome and the time;
* :mod:`~wfe_core.engine._active` -- the pass's index of the active pointers.

Every time the engine records (a pointer's start and end, a sleep's end, a retry's next
attempt, an event timeout, errors and lifecycle events) comes from the executor's
:class:`~wfe_core.clock.Clock`; waiting is measured on the event loop's clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from wfe_core import log_context
from wfe_core.clock import SYSTEM_CLOCK
from wfe_core.engine._pass import Pass
from wfe_core.engine._transitions import SUBSCRIPTION_ID

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from wfe_core._runtime import HostContext
    from wfe_core._step import StepBody
    from wfe_core.clock import Clock
    from wfe_core.engine.middleware import StepMiddleware
    from wfe_core.models._definition import StepDefinition, WorkflowDefinition
    from wfe_core.models._event import Event, EventSubscription
    from wfe_core.models._instance import ExecutionError, ExecutionPointer, WorkflowInstance
    from wfe_core.models._lifecycle import LifecycleEvent
    from wfe_core.providers._persistence import LivePart, PointerWrite

__all__ = ["SUBSCRIPTION_ID", "PassEnvironment", "WorkflowExecutor"]


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
        outbox: Sequence[Event] = (),
        last: bool = False,
        pointer_write: PointerWrite | None = None,
    ) -> None:
        """Store ``instance`` (revision-checked) with new subscriptions and errors, then close
        ``closed_subscriptions``; ``changed_pointers`` are the pointers changed since the last
        call (see ``PersistenceProvider.persist_workflow``). ``outbox``: events to store in
        the same write and deliver after it (``persist_workflow(..., events=)``), such as a
        :data:`~wfe_core.primitives.TERMINATE_CHILD_EVENT` for the child of a cancelled
        sub-workflow step. ``last``: the pass makes no write after this one (it ends once
        this is stored: the workflow finished, sleeps, waits, or the pass was stopped), so a
        host may give the pass's lease back in the same write. ``pointer_write``: given for
        an instance the pass got as a :class:`~wfe_core.providers.LivePart` (passed on to
        ``persist_workflow``). Raises ConcurrencyError for a stale writer."""
        ...

    async def stored_pointers(self, workflow_id: str, count: int) -> Sequence[ExecutionPointer]:
        """Every stored pointer of ``workflow_id`` (``count`` of them), in order: what a pass
        over a :class:`~wfe_core.providers.LivePart` reads when it needs the finished ones."""
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


class WorkflowExecutor:
    """Runs passes over workflow instances for a host.

    ``clock`` gives every time the engine records (default: the wall clock); a test clock
    makes those times exact. ``max_parallel_steps`` bounds the steps one pass runs at once;
    ``step_middleware`` wraps every step run.
    """

    def __init__(
        self,
        environment: PassEnvironment,
        *,
        max_parallel_steps: int = 64,
        step_middleware: Sequence[StepMiddleware] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.environment = environment
        self.max_parallel_steps = max_parallel_steps
        self.step_middleware = step_middleware
        self.clock = clock

    def _pass(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        should_stop: Callable[[], bool],
        live: LivePart | None,
    ) -> Pass:
        return Pass(
            self.environment,
            instance,
            definition,
            should_stop,
            clock=self.clock,
            max_parallel_steps=self.max_parallel_steps,
            step_middleware=self.step_middleware,
            live=live,
        )

    async def run_pass(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        live: LivePart | None = None,
    ) -> None:
        """Run everything runnable in ``instance`` until nothing is, or ``should_stop()``
        (then running steps finish and nothing new starts). ``instance`` is updated in place
        and persisted; its ``next_execution`` says when it next has work. ``live``: the
        live part ``instance`` was read as (``live.instance``), when it was read so."""
        # Every record logged during the pass (its steps' too) names the workflow.
        with log_context.bound(workflow_id=instance.id, definition_id=instance.definition_id):
            await self._pass(instance, definition, should_stop, live).run()

    async def fail_workflow(
        self,
        instance: WorkflowInstance,
        definition: WorkflowDefinition,
        message: str,
        *,
        error_type: str | None = None,
        live: LivePart | None = None,
    ) -> None:
        """Fail ``instance`` without running a step, recording ``message`` as its error (for
        a workflow no pass can run, such as one whose stored data does not fit its data
        type). Persisted and announced like a pass's last write. ``live`` as for
        :meth:`run_pass`."""
        with log_context.bound(workflow_id=instance.id, definition_id=instance.definition_id):
            await self._pass(instance, definition, lambda: True, live).fail(message, error_type)
