"""The attrs models of WFE. Serialize them only through :mod:`wfe_core.serialization`.

Import them from this package: its submodules are internal."""

from __future__ import annotations

from wfe_core.models.definition import (
    ErrorBehavior,
    ErrorBehaviorKind,
    OutcomeRoute,
    StepDefinition,
    WorkflowDefinition,
)
from wfe_core.models.event import Event, EventSubscription
from wfe_core.models.external import OpenUserAction, PendingActivity, UserActionOption
from wfe_core.models.instance import (
    INTERNAL_POINTER,
    ExecutionError,
    ExecutionPointer,
    WorkflowInstance,
    new_id,
)
from wfe_core.models.lifecycle import LifecycleEvent, LifecycleEventType
from wfe_core.models.page import Page
from wfe_core.models.status import PointerStatus, WorkflowStatus

__all__ = [
    "INTERNAL_POINTER",
    "ErrorBehavior",
    "ErrorBehaviorKind",
    "Event",
    "EventSubscription",
    "ExecutionError",
    "ExecutionPointer",
    "LifecycleEvent",
    "LifecycleEventType",
    "OpenUserAction",
    "OutcomeRoute",
    "Page",
    "PendingActivity",
    "PointerStatus",
    "StepDefinition",
    "UserActionOption",
    "WorkflowDefinition",
    "WorkflowInstance",
    "WorkflowStatus",
    "new_id",
]
