"""Lifecycle events the host publishes as workflows and steps progress."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import attrs

from wfe_core.models._instance import utcnow


class LifecycleEventType(StrEnum):
    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_RESUMED = "workflow_resumed"
    WORKFLOW_SUSPENDED = "workflow_suspended"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_TERMINATED = "workflow_terminated"
    WORKFLOW_FAILED = "workflow_failed"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    WORKFLOW_ERROR = "workflow_error"


@attrs.frozen
class LifecycleEvent:
    type: LifecycleEventType
    workflow_id: str
    definition_id: str
    version: int
    reference: str | None = None
    step_id: int | None = None
    step_name: str | None = None
    pointer_id: str | None = None
    message: str | None = None
    time: datetime = attrs.field(factory=utcnow)
