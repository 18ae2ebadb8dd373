"""Running a child workflow and waiting for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wfe_core.errors import WfeError, WorkflowNotFoundError
from wfe_core.models.status import WorkflowStatus
from wfe_core.results import ExecutionResult
from wfe_core.step import StepBody

if TYPE_CHECKING:
    from wfe_core.models.instance import WorkflowInstance
    from wfe_core.step import StepContext

#: The internal event a host publishes, keyed by the child's id, when a child workflow with a
#: parent finishes (complete, failed or terminated).
CHILD_FINISHED_EVENT = "wfe.workflow-finished"

#: Subscriptions that must see events published at any time (even before they existed).
BEGINNING_OF_TIME = datetime.min.replace(tzinfo=UTC)


class ChildWorkflowError(WfeError):
    """A child workflow failed or was terminated; the parent's step fails with this."""


def child_workflow_id(ctx: StepContext) -> str:
    """The child's id: derived from the step's idempotency key (and its failures, so a retry
    starts a new child), so a step run twice after a crash starts the child only once."""
    failures = int(ctx.pointer.extensions.get("failures", 0))
    return uuid.uuid5(uuid.NAMESPACE_URL, f"wfe:{ctx.idempotency_key}:{failures}").hex


class SubWorkflow(StepBody):
    """Starts workflow ``definition_id`` (``version``; latest when ``None``) with
    ``child_data`` and goes on when it completes; ``child`` is then the finished child
    instance and ``result`` its data. A failed or terminated child fails this step."""

    definition_id: str = ""
    version: int | None = None
    child_data: Any = None

    def __init__(self) -> None:
        self.child: WorkflowInstance | None = None
        self.result: Any = None

    async def run(self, ctx: StepContext) -> ExecutionResult:
        child_id = child_workflow_id(ctx)
        if ctx.pointer.event_published:
            child = await ctx.host.get_workflow(child_id)
            if child.status != WorkflowStatus.COMPLETE:
                detail = ""
                if isinstance(ctx.pointer.event_data, dict):
                    detail = str(ctx.pointer.event_data.get("error") or "")
                raise ChildWorkflowError(
                    f"child workflow {child_id} ({child.definition_id} v{child.version}) "
                    f"{child.status}" + (f": {detail}" if detail else "")
                )
            self.child = child
            self.result = child.data
            return ExecutionResult.next()
        try:
            await ctx.host.get_workflow(child_id)
        except WorkflowNotFoundError:
            await ctx.host.start_workflow(
                self.definition_id,
                data=self.child_data,
                version=self.version,
                parent_workflow_id=ctx.workflow.id,
                parent_pointer_id=ctx.pointer.id,
                workflow_id=child_id,
            )
        return ExecutionResult.wait_for_event(CHILD_FINISHED_EVENT, child_id, BEGINNING_OF_TIME)
