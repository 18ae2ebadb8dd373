"""Choosing how a failed step is handled, and what a compensation undoes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.models._definition import ErrorBehavior, ErrorBehaviorKind
from wfe_core.models._status import PointerStatus

if TYPE_CHECKING:
    from wfe_core.models._definition import StepDefinition, WorkflowDefinition
    from wfe_core.models._instance import ExecutionPointer, WorkflowInstance

#: ``pointer.extensions`` key: the pointer this compensation pointer undoes.
COMPENSATES = "compensates"
#: ``pointer.extensions`` key: pointers still to compensate after this one (in order).
CHAIN = "compensation_chain"
#: ``pointer.extensions`` key: failures of this step visit so far.
FAILURES = "failures"
#: ``pointer.extensions`` key on a saga pointer: the saga compensated (a failure inside it);
#: when it runs again, its compensations are done and its own error behaviour applies.
COMPENSATED = "compensated"
#: ``pointer.extensions`` key on a failed top-level pointer: fail the workflow once its
#: compensations have run.
FAIL_AFTER_COMPENSATION = "fail_after_compensation"


def saga_of(
    instance: WorkflowInstance, definition: WorkflowDefinition, pointer: ExecutionPointer
) -> ExecutionPointer | None:
    """The innermost saga pointer ``pointer`` runs inside, if any."""
    for container_id in pointer.scope:
        container = instance.pointer(container_id)
        if definition.step(container.step_id).is_saga:
            return container
    return None


def in_compensation(instance: WorkflowInstance, pointer: ExecutionPointer) -> bool:
    """Whether ``pointer`` undoes something: a compensation step, or a step of a multi-step
    compensation (``compensate_with_sequence``)."""
    if COMPENSATES in pointer.extensions:
        return True
    return any(COMPENSATES in instance.pointer(c).extensions for c in pointer.scope)


def fallback_behavior(
    definition: WorkflowDefinition, in_saga: bool, is_compensation: bool
) -> ErrorBehavior:
    """What applies when the step sets nothing, or its retries ran out."""
    if is_compensation:
        # A failing compensation must not compensate again: that could never end.
        return ErrorBehavior.fail()
    if in_saga:
        return ErrorBehavior.compensate()
    default = definition.default_error_behavior
    if default is not None and default.kind != ErrorBehaviorKind.RETRY:
        return default
    return ErrorBehavior.fail()


def chosen_behavior(
    definition: WorkflowDefinition, step: StepDefinition, in_saga: bool, is_compensation: bool
) -> ErrorBehavior:
    """The behaviour that applies to a failure of ``step``: its own, else the saga's
    compensation, else the definition's default, else fail."""
    if step.error_behavior is not None:
        return step.error_behavior
    if not is_compensation and not in_saga and definition.default_error_behavior is not None:
        return definition.default_error_behavior
    return fallback_behavior(definition, in_saga, is_compensation)


def compensation_targets(
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    failed: ExecutionPointer,
    members: list[ExecutionPointer],
) -> list[str]:
    """Ids of the pointers to undo, in order: the failed step first, then the completed
    steps of ``members`` from the last completed to the first."""
    targets: list[str] = []
    if definition.step(failed.step_id).compensation_step_id is not None:
        targets.append(failed.id)
    order = {p.id: index for index, p in enumerate(instance.pointers)}
    done = [
        p
        for p in members
        if p.status == PointerStatus.COMPLETE
        and p.id != failed.id
        and COMPENSATES not in p.extensions
        and definition.step(p.step_id).compensation_step_id is not None
    ]
    done.sort(key=lambda p: (p.end_time is not None, p.end_time, order[p.id]), reverse=True)
    targets.extend(p.id for p in done)
    return targets
