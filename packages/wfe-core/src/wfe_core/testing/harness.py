"""Run the executor without a host: passes over one instance on memory persistence.

Good for testing steps, primitives and definitions in isolation (no queues, workers or
events)::

    harness = EngineHarness()
    instance = await harness.run(definition, {"n": 1})
    assert instance.status == WorkflowStatus.COMPLETE

With ``EngineHarness(clock=ManualClock())`` the engine records every time on that clock and
:meth:`EngineHarness.run` moves the clock to the next due time instead of sleeping: a workflow
that waits a day finishes at once, a day later on the clock.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from wfe_core.clock import SYSTEM_CLOCK
from wfe_core.engine import WorkflowExecutor
from wfe_core.errors import SubscriptionNotFoundError
from wfe_core.memory._persistence import MemoryPersistence
from wfe_core.models import WorkflowInstance
from wfe_core.providers._persistence import stored_pointers
from wfe_core.testing.clock import ManualClock

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from wfe_core._step import StepBody
    from wfe_core.clock import Clock
    from wfe_core.models import (
        Event,
        EventSubscription,
        ExecutionError,
        ExecutionPointer,
        LifecycleEvent,
        StepDefinition,
        WorkflowDefinition,
    )
    from wfe_core.providers import PointerWrite

__all__ = ["EngineHarness"]


class EngineHarness:
    """Runs passes of the executor directly on memory persistence (no host, no events):
    reloads the instance before every pass, waits until it is due, until it finishes.

    ``clock`` is the engine's clock (default: the wall clock, and waiting sleeps); with a
    :class:`~wfe_core.testing.ManualClock`, waiting advances that clock instead."""

    def __init__(self, max_parallel_steps: int = 64, *, clock: Clock | None = None) -> None:
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self.persistence = MemoryPersistence()
        self.events: list[LifecycleEvent] = []
        self.subscriptions: list[EventSubscription] = []
        self.executor = WorkflowExecutor(
            self, max_parallel_steps=max_parallel_steps, clock=self.clock
        )

    @property
    def host_context(self) -> Any:
        return None

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
        self.subscriptions.extend(subscriptions)
        await self.persistence.persist_workflow(
            instance,
            subscriptions=subscriptions,
            errors=errors,
            events=outbox,
            changed_pointers=changed_pointers,
            pointer_write=pointer_write,
        )
        # As the host does: a cancelled wait's subscription matches nothing any more.
        for subscription_id in closed_subscriptions:
            with contextlib.suppress(SubscriptionNotFoundError):
                await self.persistence.terminate_subscription(subscription_id)

    async def stored_pointers(self, workflow_id: str, count: int) -> list[ExecutionPointer]:
        return await stored_pointers(self.persistence, workflow_id, count)

    async def publish(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    def wants_lifecycle_events(self) -> bool:
        return True

    def create_body(self, step: StepDefinition) -> StepBody:
        return step.create_body()

    async def start(self, definition: WorkflowDefinition, data: Any = None) -> WorkflowInstance:
        now = self.clock.now()
        instance = WorkflowInstance(
            definition.id,
            definition.version,
            data={} if data is None else data,
            next_execution=now,
            create_time=now,
        )
        await self.persistence.create_workflow(instance)
        return instance

    async def run(
        self, definition: WorkflowDefinition, data: Any = None, *, max_passes: int = 500
    ) -> WorkflowInstance:
        """Run to the end (or until nothing can wake it) and return the stored instance.
        Each pass reads the instance's live part, as a host's does."""
        workflow_id = (await self.start(definition, data)).id
        for _ in range(max_passes):
            live = await self.persistence.get_live_part(workflow_id)
            instance = live.instance
            await self.executor.run_pass(instance, definition, live=live)
            if instance.status.is_finished or instance.next_execution is None:
                return await self.persistence.get_workflow(workflow_id)
            wait = max(instance.next_execution - self.clock.now(), timedelta(0))
            if isinstance(self.clock, ManualClock):
                self.clock.advance(wait)  # time travel: nothing real to wait for
            else:
                await anyio.sleep(wait.total_seconds())
        raise AssertionError(f"not finished after {max_passes} passes")
