"""Run the executor without a host: passes over one instance on memory persistence.

Good for testing steps, primitives and definitions in isolation (no queues, workers or
events)::

    harness = EngineHarness()
    instance = await harness.run(definition, {"n": 1})
    assert instance.status == WorkflowStatus.COMPLETE
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from wfe_core.engine import WorkflowExecutor
from wfe_core.memory.persistence import MemoryPersistence
from wfe_core.models import WorkflowInstance
from wfe_core.models.instance import utcnow

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from wfe_core.models import (
        EventSubscription,
        ExecutionError,
        LifecycleEvent,
        StepDefinition,
        WorkflowDefinition,
    )
    from wfe_core.step import StepBody

__all__ = ["EngineHarness"]


class EngineHarness:
    """Runs passes of the executor directly on memory persistence (no host, no events):
    reloads the instance before every pass, sleeps until it is due, until it finishes."""

    def __init__(self, max_parallel_steps: int = 64) -> None:
        self.persistence = MemoryPersistence()
        self.events: list[LifecycleEvent] = []
        self.subscriptions: list[EventSubscription] = []
        self.executor = WorkflowExecutor(self, max_parallel_steps=max_parallel_steps)

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
    ) -> None:
        self.subscriptions.extend(subscriptions)
        await self.persistence.persist_workflow(
            instance,
            subscriptions=subscriptions,
            errors=errors,
            changed_pointers=changed_pointers,
        )

    async def publish(self, event: LifecycleEvent) -> None:
        self.events.append(event)

    def wants_lifecycle_events(self) -> bool:
        return True

    def create_body(self, step: StepDefinition) -> StepBody:
        return step.create_body()

    async def start(self, definition: WorkflowDefinition, data: Any = None) -> WorkflowInstance:
        instance = WorkflowInstance(
            definition.id,
            definition.version,
            data={} if data is None else data,
            next_execution=utcnow(),
        )
        await self.persistence.create_workflow(instance)
        return instance

    async def run(
        self, definition: WorkflowDefinition, data: Any = None, *, max_passes: int = 500
    ) -> WorkflowInstance:
        """Run to the end (or until nothing can wake it) and return the stored instance."""
        workflow_id = (await self.start(definition, data)).id
        for _ in range(max_passes):
            instance = await self.persistence.get_workflow(workflow_id)
            await self.executor.run_pass(instance, definition)
            if instance.status.is_finished or instance.next_execution is None:
                return await self.persistence.get_workflow(workflow_id)
            wait = (instance.next_execution - utcnow()).total_seconds()
            await anyio.sleep(max(wait, 0.0))
        raise AssertionError(f"not finished after {max_passes} passes")
