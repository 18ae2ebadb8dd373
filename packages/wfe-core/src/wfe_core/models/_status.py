"""Status enums of workflow instances and execution pointers."""

from __future__ import annotations

from enum import StrEnum


class WorkflowStatus(StrEnum):
    RUNNABLE = "runnable"
    SUSPENDED = "suspended"
    COMPLETE = "complete"
    TERMINATED = "terminated"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        """True for the statuses a workflow never leaves (complete, terminated, failed)."""
        return self in _FINISHED


_FINISHED = frozenset({WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED, WorkflowStatus.FAILED})


class PointerStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING_FOR_EVENT = "waiting_for_event"
    COMPLETE = "complete"
    SKIPPED = "skipped"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"
