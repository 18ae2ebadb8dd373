"""Running a child workflow and waiting for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody
from wfe_core.errors import WfeError, WorkflowNotFoundError
from wfe_core.models._status import WorkflowStatus

if TYPE_CHECKING:
    from wfe_core._step import StepContext
    from wfe_core.models._instance import ExecutionPointer, WorkflowInstance

#: The internal event a host publishes, keyed by the child's id, when a child workflow with a
#: parent finishes (complete, failed or terminated). The host stores it in the same write as
#: the child's final state (``persist_workflow(..., events=...)``), so it cannot be lost.
CHILD_FINISHED_EVENT = "wfe.workflow-finished"

#: The internal event a host stores, keyed by a child's id, in the write that terminates the
#: child's parent: delivering it terminates the child (parent close policy "terminate"). Its
#: data names the parent (``{"parent_workflow_id": ...}``); a child of another parent is left
#: alone.
TERMINATE_CHILD_EVENT = "wfe.terminate-child"

#: Subscriptions that must see events published at any time (even before they existed).
BEGINNING_OF_TIME = datetime.min.replace(tzinfo=UTC)


class ChildWorkflowError(WfeError):
    """A child workflow failed or was terminated; the parent's step fails with this."""


def child_workflow_id(ctx: StepContext) -> str:
    """The child's id: derived from the step's idempotency key (and its failures, so a retry
    starts a new child), so a step run twice after a crash starts the child only once."""
    return _derived_child_id(ctx.workflow.id, ctx.pointer)


def _derived_child_id(workflow_id: str, pointer: ExecutionPointer) -> str:
    # The idempotency key is "<workflow id>:<pointer id>" (StepContext.idempotency_key).
    failures = int(pointer.extensions.get("failures", 0))
    return uuid.uuid5(uuid.NAMESPACE_URL, f"wfe:{workflow_id}:{pointer.id}:{failures}").hex


def child_workflow_candidates(instance: WorkflowInstance) -> list[str]:
    """Ids of the child workflows the active pointers of ``instance`` may have started.

    A sub-workflow step waiting for its child names it in its wait (``event_key`` of
    :data:`CHILD_FINISHED_EVENT`). A step still running may have started its child without
    that wait being stored yet (a pass cancelled by terminate), so for every other active
    pointer the id it would give its child is included too. Most candidates name no stored
    instance: check ``parent_workflow_id`` of those that exist.
    """
    candidates: dict[str, None] = {}
    for pointer in instance.pointers:
        if not pointer.active:
            continue
        if pointer.event_name == CHILD_FINISHED_EVENT and pointer.event_key:
            candidates[pointer.event_key] = None
        else:
            candidates[_derived_child_id(instance.id, pointer)] = None
    return list(candidates)


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
