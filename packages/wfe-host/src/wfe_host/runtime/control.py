"""The instance changes behind suspend, resume and terminate (run under the instance's lease
by :meth:`~wfe_host.runtime.passes.PassRunner.with_lease`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.models import (
    Event,
    LifecycleEvent,
    LifecycleEventType,
    PointerStatus,
    WorkflowStatus,
)
from wfe_core.primitives import TERMINATE_CHILD_EVENT, child_workflow_candidates
from wfe_core.spi import SUBSCRIPTION_ID, utcnow

if TYPE_CHECKING:
    from wfe_core.models import WorkflowInstance
    from wfe_host.host import WorkflowHost


def lifecycle_event(instance: WorkflowInstance, event_type: LifecycleEventType) -> LifecycleEvent:
    """A workflow-level lifecycle event about ``instance``."""
    return LifecycleEvent(
        type=event_type,
        workflow_id=instance.id,
        definition_id=instance.definition_id,
        version=instance.version,
        reference=instance.reference,
    )


async def suspend(host: WorkflowHost, instance: WorkflowInstance, *, fence: int | None) -> bool:
    """Suspend a runnable instance (writing under the lease token ``fence``); False when it
    was not runnable."""
    if instance.status != WorkflowStatus.RUNNABLE:
        return False
    instance.status = WorkflowStatus.SUSPENDED
    await host._store(instance, fence=fence)
    await host._publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_SUSPENDED))
    return True


async def resume(host: WorkflowHost, instance: WorkflowInstance, *, fence: int | None) -> bool:
    """Make a suspended instance runnable (due now), writing under the lease token
    ``fence``; False when it was not suspended."""
    if instance.status != WorkflowStatus.SUSPENDED:
        return False
    instance.status = WorkflowStatus.RUNNABLE
    instance.next_execution = utcnow()
    await host._store(instance, fence=fence)
    await host._publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_RESUMED))
    return True


async def terminate(
    host: WorkflowHost, instance: WorkflowInstance, *, fence: int | None
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
        for child in await host.persistence.get_workflows(candidates)
        if child.parent_workflow_id == instance.id and not child.status.is_finished
    ]
    now = utcnow()
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
        Event(name=TERMINATE_CHILD_EVENT, key=child_id, data={"parent_workflow_id": instance.id})
        for child_id in children
    ]
    events = [*await host._finished_events(instance), *terminations]
    await host._store(instance, closed_subscriptions=closed, events=events, fence=fence)
    await host._publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_TERMINATED))
    await host._on_finished(instance)
    return True, [event.id for event in terminations]
