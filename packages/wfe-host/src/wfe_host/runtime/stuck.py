"""Finding stuck instances: runnable, due for a while, and held by no worker.

Such an instance is not moving: no worker running on the store has its definition version
(the pass then records why on the instance, see ``PassRunner``), no worker runs at all, or
the workers are too busy to keep up. Each comes with the last error recorded on it, which
says which of those it is when a worker found out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from wfe_core.errors import WorkflowNotFoundError
from wfe_core.models import ExecutionError, Page, WorkflowInstance, WorkflowStatus

if TYPE_CHECKING:
    from datetime import timedelta

    from wfe_host.runtime.core import HostCore

__all__ = ["StuckWorkflow", "find_stuck"]


@attrs.frozen
class StuckWorkflow:
    """An instance that is due but not moving, and the last error recorded on it."""

    instance: WorkflowInstance
    last_error: ExecutionError | None


async def find_stuck(
    core: HostCore,
    *,
    overdue: timedelta,
    definition_id: str | None = None,
    skip: int = 0,
    take: int = 100,
) -> Page[StuckWorkflow]:
    """The runnable instances due for longer than ``overdue`` whose lease nobody holds,
    newest first. Reads every overdue instance (they should be few)."""
    as_of = core.clock.now() - overdue
    found: list[WorkflowInstance] = []
    for workflow_id in await core.persistence.get_runnable_instances(as_of):
        if await core.lock.holder(workflow_id) is not None:
            continue  # a worker is running it (a long step keeps it due meanwhile)
        try:
            instance = await core.persistence.get_workflow(workflow_id)
        except WorkflowNotFoundError:
            continue  # purged meanwhile
        if instance.status != WorkflowStatus.RUNNABLE:
            continue
        if definition_id is not None and instance.definition_id != definition_id:
            continue
        found.append(instance)
    found.sort(key=lambda i: (i.create_time, i.id), reverse=True)
    items = []
    for instance in found[skip : skip + take]:
        errors = await core.persistence.get_errors(instance.id)
        items.append(StuckWorkflow(core.restore(instance), errors[-1] if errors else None))
    return Page(items, len(found), skip, take)
