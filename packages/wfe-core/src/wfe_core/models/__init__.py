"""The attrs models of WFE. Serialize them only through :mod:`wfe_core.serialization`.

Import them from this package: its submodules are internal."""

from __future__ import annotations

from wfe_core.models._definition import (
    ErrorBehavior,
    ErrorBehaviorKind,
    OutcomeRoute,
    StepDefinition,
    WorkflowDefinition,
)
from wfe_core.models._event import Event, EventSubscription
from wfe_core.models._external import OpenUserAction, PendingActivity, UserActionOption
from wfe_core.models._instance import (
    INTERNAL_POINTER,
    ExecutionError,
    ExecutionPointer,
    WorkflowInstance,
    new_id,
)
from wfe_core.models._lifecycle import LifecycleEvent, LifecycleEventType
from wfe_core.models._page import Page
from wfe_core.models._status import PointerStatus, WorkflowStatus
from wfe_core.models._trace import TraceContext

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
    "TraceContext",
    "UserActionOption",
    "WorkflowDefinition",
    "WorkflowInstance",
    "WorkflowStatus",
    "new_id",
]
