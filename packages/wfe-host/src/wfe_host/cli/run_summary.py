"""What ``wfe run`` reports when a run ends: the declared outputs, and the ``--json``
summary for scripts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from wfe_core.serialization import to_primitive
from wfe_host.cli.pointers import ordered_pointers

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wfe_core.models import (
        ExecutionError,
        ExecutionPointer,
        WorkflowDefinition,
        WorkflowInstance,
    )

__all__ = ["declared_outputs", "format_value", "run_summary"]


def declared_outputs(definition: WorkflowDefinition, instance: WorkflowInstance) -> dict[str, Any]:
    """The values of the definition's declared outputs the workflow data holds, in the
    declared order."""
    if not definition.outputs:
        return {}
    data = to_primitive(instance.data)
    if not isinstance(data, dict):
        return {}
    return {name: data[name] for name in definition.outputs if name in data}


def format_value(value: Any) -> str:
    """A string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _seconds(pointer: ExecutionPointer) -> float | None:
    if pointer.start_time is None or pointer.end_time is None:
        return None
    return round((pointer.end_time - pointer.start_time).total_seconds(), 3)


def run_summary(
    definition: WorkflowDefinition,
    instance: WorkflowInstance,
    errors: Sequence[ExecutionError],
    *,
    status: str,
    seconds: float,
) -> dict[str, Any]:
    """The ``wfe run --json`` object: ``status`` (the workflow's, or ``timeout``), the
    declared ``outputs``, and each of the user's ``steps`` in the order they ran."""
    return {
        "workflow_id": instance.id,
        "definition": definition.id,
        "version": definition.version,
        "status": status,
        "duration": round(seconds, 3),
        "outputs": declared_outputs(definition, instance),
        "error": errors[-1].message if errors and status != "complete" else None,
        "steps": [
            {
                "step_id": p.step_id,
                "name": p.step_name,
                "status": str(p.status),
                "started": None if p.start_time is None else p.start_time.isoformat(),
                "ended": None if p.end_time is None else p.end_time.isoformat(),
                "duration": _seconds(p),
                "attempts": p.attempt,
                "error": p.error,
            }
            for p in ordered_pointers(instance)
        ],
    }
