"""A running (or finished) workflow: its data and its execution pointers."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import attrs

from wfe_core.models._status import PointerStatus, WorkflowStatus
from wfe_core.models._trace import TraceContext

#: The bits of a UUID that hold its version and variant, and their values for version 4.
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """A new random id (UUID4 hex) for instances, pointers, events and subscriptions.

    The same 32 hex digits as ``uuid.uuid4().hex`` (from ``os.urandom`` too), without building
    a ``UUID`` object, which costs three times as much: every step creates a pointer.
    """
    return f"{int.from_bytes(os.urandom(16)) & _VERSION_MASK | _VERSION_4:032x}"


def utcnow() -> datetime:
    return datetime.now(UTC)


#: The :attr:`ExecutionPointer.extensions` key set (to ``True``) on pointers of steps the
#: definition marks ``metadata["hidden"]``.
INTERNAL_POINTER = "wfe.internal"


@attrs.define
class ExecutionPointer:
    """Where execution stands on one step: one pointer per step visit (and per branch item).

    ``scope`` is the stack of container pointer ids this pointer runs inside (innermost
    first); ``children`` the ids of the pointers a container started. ``extensions`` holds
    what step bodies keep between runs, and :data:`INTERNAL_POINTER` when the pointer's step
    is plumbing a definition format compiled to (see :attr:`internal`).
    """

    step_id: int
    id: str = attrs.field(factory=new_id)
    step_name: str | None = None
    status: PointerStatus = PointerStatus.PENDING
    active: bool = True
    start_time: datetime | None = None
    end_time: datetime | None = None
    sleep_until: datetime | None = None
    persistence_data: Any = None
    event_name: str | None = None
    event_key: str | None = None
    event_effective_date: datetime | None = None
    event_published: bool = False
    event_data: Any = None
    outcome: Any = None
    attempt: int = 0
    predecessor_id: str | None = None
    context_item: Any = None
    children: list[str] = attrs.field(factory=list)
    scope: list[str] = attrs.field(factory=list)
    error: str | None = None
    extensions: dict[str, Any] = attrs.field(factory=dict)

    @property
    def internal(self) -> bool:
        """Whether the pointer's step is engine plumbing rather than a step the user wrote:
        its definition marks it ``metadata["hidden"]`` (a YAML step's guard and phases, the
        outputs check). Tools hide these (``wfe workflows show`` without ``--all``)."""
        return self.extensions.get(INTERNAL_POINTER) is True


@attrs.define
class WorkflowInstance:
    """One run of a workflow definition.

    ``revision`` is the optimistic-concurrency token: persistence bumps it on every write and
    refuses a write whose ``revision`` is not the stored one. ``next_execution`` is when the
    instance next has work (``None``: nothing scheduled; it waits for an event or a child).
    ``data`` is the workflow data as the definition's data type; providers store it through the
    converter and the host restores the type on load. ``trace_context`` is the trace the
    workflow belongs to (see :class:`TraceContext`): set when it is started inside a span, or
    by its first pass; ``None`` without OpenTelemetry.
    """

    definition_id: str
    version: int
    id: str = attrs.field(factory=new_id)
    status: WorkflowStatus = WorkflowStatus.RUNNABLE
    data: Any = None
    reference: str | None = None
    description: str | None = None
    pointers: list[ExecutionPointer] = attrs.field(factory=list)
    next_execution: datetime | None = None
    create_time: datetime = attrs.field(factory=utcnow)
    complete_time: datetime | None = None
    revision: int = 0
    parent_workflow_id: str | None = None
    parent_pointer_id: str | None = None
    trace_context: TraceContext | None = None

    def pointer(self, pointer_id: str) -> ExecutionPointer:
        """The pointer with ``pointer_id`` (``KeyError`` when there is none)."""
        for pointer in self.pointers:
            if pointer.id == pointer_id:
                return pointer
        raise KeyError(pointer_id)


@attrs.define
class ExecutionError:
    """A failure of one step run, kept for diagnosis (the workflow may retry past it); of the
    workflow itself when ``pointer_id`` is ``None`` (no step could run)."""

    workflow_id: str
    pointer_id: str | None
    message: str
    step_id: int | None = None
    step_name: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    time: datetime = attrs.field(factory=utcnow)
