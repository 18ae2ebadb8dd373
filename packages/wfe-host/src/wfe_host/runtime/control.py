"""Suspend, resume and terminate: the instance changes behind them (run under the instance's
lease by :meth:`~wfe_host.runtime.passes.PassRunner.with_lease`) and the operations."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wfe_core.errors import WfeError, WorkflowNotFoundError
from wfe_core.models import (
    Event,
    LifecycleEvent,
    LifecycleEventType,
    PointerStatus,
    WorkflowStatus,
)
from wfe_core.primitives import TERMINATE_CHILD_EVENT, child_workflow_candidates
from wfe_core.spi import SUBSCRIPTION_ID

if TYPE_CHECKING:
    from wfe_core.models import WorkflowInstance
    from wfe_host.runtime.core import HostCore
    from wfe_host.runtime.events import EventDelivery
    from wfe_host.runtime.passes import PassRunner

logger = logging.getLogger("wfe_host")


def lifecycle_event(instance: WorkflowInstance, event_type: LifecycleEventType) -> LifecycleEvent:
    """A workflow-level lifecycle event about ``instance``."""
    return LifecycleEvent(
        type=event_type,
        workflow_id=instance.id,
        definition_id=instance.definition_id,
        version=instance.version,
        reference=instance.reference,
    )


async def suspend(core: HostCore, instance: WorkflowInstance, *, fence: int | None) -> bool:
    """Suspend a runnable instance (writing under the lease token ``fence``); False when it
    was not runnable."""
    if instance.status != WorkflowStatus.RUNNABLE:
        return False
    instance.status = WorkflowStatus.SUSPENDED
    await core.store(instance, fence=fence)
    await core.publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_SUSPENDED))
    return True


async def resume(core: HostCore, instance: WorkflowInstance, *, fence: int | None) -> bool:
    """Make a suspended instance runnable (due now), writing under the lease token
    ``fence``; False when it was not suspended."""
    if instance.status != WorkflowStatus.SUSPENDED:
        return False
    instance.status = WorkflowStatus.RUNNABLE
    instance.next_execution = core.clock.now()
    await core.store(instance, fence=fence)
    await core.publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_RESUMED))
    return True


async def terminate(
    core: HostCore, instance: WorkflowInstance, *, fence: int | None
) -> tuple[bool, list[str]]:
    """Cancel every active pointer and end the instance as terminated (writing under the
    lease token ``fence``); False when it had already finished. With it are stored a
    child-finished event for its parent and a
    :data:`~wfe_core.primitives.TERMINATE_CHILD_EVENT` for each unfinished child (returned:
    the caller delivers them once it released this instance's lease)."""
    if instance.status.is_finished:
        return False, []
    # Found before the pointers are cancelled: the active ones lead to the children.
    candidates = child_workflow_candidates(instance)
    children = [
        child.id
        for child in await core.persistence.get_workflows(candidates)
        if child.parent_workflow_id == instance.id and not child.status.is_finished
    ]
    now = core.clock.now()
    closed: list[str] = []
    for pointer in instance.pointers:
        if pointer.active:
            pointer.active = False
            pointer.status = PointerStatus.CANCELLED
            pointer.end_time = now
            subscription = pointer.extensions.pop(SUBSCRIPTION_ID, None)
            if subscription is not None:
                closed.append(subscription)
    instance.status = WorkflowStatus.TERMINATED
    instance.complete_time = now
    instance.next_execution = None
    terminations = [
        Event(
            name=TERMINATE_CHILD_EVENT,
            key=child_id,
            data={"parent_workflow_id": instance.id},
            time=now,
            trace_context=core.trace_context(),
        )
        for child_id in children
    ]
    events = [*await core.finished_events(instance), *terminations]
    await core.store(instance, closed_subscriptions=closed, events=events, fence=fence)
    await core.publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_TERMINATED))
    await core.on_finished(instance)
    return True, [event.id for event in terminations]


class Control:
    """Suspend, resume and terminate workflows, serialized with passes by their lease.

    It also delivers the events that terminate child workflows (registered with ``events``
    as it is made)."""

    def __init__(self, core: HostCore, passes: PassRunner, events: EventDelivery) -> None:
        self.core = core
        self.passes = passes
        self.events = events
        events.handle(TERMINATE_CHILD_EVENT, self.terminate_child)

    async def suspend_workflow(self, workflow_id: str) -> bool:
        """Suspend a runnable workflow (running steps finish first). False when it was not
        runnable."""
        return bool(
            await self.passes.with_lease(
                workflow_id, lambda i, fence: suspend(self.core, i, fence=fence)
            )
        )

    async def resume_workflow(self, workflow_id: str) -> bool:
        """Resume a suspended workflow. False when it was not suspended."""
        resumed = bool(
            await self.passes.with_lease(
                workflow_id, lambda i, fence: resume(self.core, i, fence=fence)
            )
        )
        if resumed:
            await self.core.enqueue_workflow(workflow_id)
        return resumed

    async def terminate_workflow(self, workflow_id: str) -> bool:
        """Terminate a workflow that has not finished and its unfinished children
        (recursively). False when it had already finished."""
        terminated, child_events = await self.passes.with_lease(
            workflow_id,
            lambda i, fence: terminate(self.core, i, fence=fence),
            cancel_running=True,
        )
        # After the parent's lease is released: a child's termination takes the child's lease.
        for event_id in child_events:
            await self.events.process(event_id)
        return bool(terminated)

    async def terminate_child(self, event: Event) -> bool:
        """Deliver a :data:`TERMINATE_CHILD_EVENT`: terminate the child it names (and its own
        children) if its parent is the one the event names. False when the child stayed busy;
        try again later."""
        parent_id = event.data.get("parent_workflow_id") if isinstance(event.data, dict) else None
        try:
            child = await self.core.persistence.get_workflow(event.key)
        except WorkflowNotFoundError:
            return True
        if parent_id is None or child.parent_workflow_id != parent_id:
            logger.warning(
                "ignored a request to terminate workflow %s: its parent is %s, not %s",
                event.key,
                child.parent_workflow_id,
                parent_id,
            )
            return True
        if child.status.is_finished:
            return True
        try:
            await self.terminate_workflow(child.id)
        except WorkflowNotFoundError:
            return True
        except WfeError:
            logger.warning("could not terminate child workflow %s yet", child.id, exc_info=True)
            return False
        logger.info(
            "terminated child workflow %s of %s",
            child.id,
            parent_id,
            extra={"workflow_id": child.id},
        )
        return True
