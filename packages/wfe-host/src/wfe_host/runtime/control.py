"""The instance changes behind suspend, resume and terminate (run under the instance's lease
by :meth:`~wfe_host.runtime.passes.PassRunner.with_lease`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.engine.executor import SUBSCRIPTION_ID
from wfe_core.models import LifecycleEvent, LifecycleEventType, PointerStatus, WorkflowStatus
from wfe_core.models.instance import utcnow

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


async def suspend(host: WorkflowHost, instance: WorkflowInstance) -> bool:
    """Suspend a runnable instance; False when it was not runnable."""
    if instance.status != WorkflowStatus.RUNNABLE:
        return False
    instance.status = WorkflowStatus.SUSPENDED
    await host._store(instance)
    await host._publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_SUSPENDED))
    return True


async def resume(host: WorkflowHost, instance: WorkflowInstance) -> bool:
    """Make a suspended instance runnable (due now); False when it was not suspended."""
    if instance.status != WorkflowStatus.SUSPENDED:
        return False
    instance.status = WorkflowStatus.RUNNABLE
    instance.next_execution = utcnow()
    await host._store(instance)
    await host._publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_RESUMED))
    return True


async def terminate(host: WorkflowHost, instance: WorkflowInstance) -> bool:
    """Cancel every active pointer and end the instance as terminated; False when it had
    already finished."""
    if instance.status.is_finished:
        return False
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
    await host._store(instance, closed_subscriptions=closed)
    await host._publish_lifecycle(lifecycle_event(instance, LifecycleEventType.WORKFLOW_TERMINATED))
    await host._on_finished(instance)
    return True
