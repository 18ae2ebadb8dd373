"""The steps of a stored workflow as users think of them: their execution pointers in the
order they ran, without the engine's internal ones.

A definition format compiles some of what users write into plumbing steps the definition
marks ``metadata["hidden"]``: with wfe-yaml, the guard and the ``(main)`` / ``(failure)`` /
``(ensure)`` phases around a step with hooks, and the check of the declared outputs. The
executor marks the pointers of those steps (:attr:`ExecutionPointer.internal`), so tools
reading the store can leave them out without the definition.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wfe_core.models import ExecutionPointer, WorkflowInstance

__all__ = ["ordered_pointers"]

_NOT_STARTED = datetime.max.replace(tzinfo=UTC)


def _start(pointer: ExecutionPointer) -> datetime:
    value = pointer.start_time
    if value is None:
        return _NOT_STARTED
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def ordered_pointers(
    instance: WorkflowInstance, *, include_internal: bool = False
) -> list[ExecutionPointer]:
    """``instance``'s pointers by start time (those not started yet last), in creation order
    when they started together; internal pointers only with ``include_internal``."""
    chosen = [p for p in instance.pointers if include_internal or not p.internal]
    # sorted() is stable: ties keep the order the executor created the pointers in.
    return sorted(chosen, key=_start)
