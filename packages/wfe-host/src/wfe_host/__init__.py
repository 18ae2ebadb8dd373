"""The WFE workflow host: runtime, plugin discovery, settings by name and the `wfe` command line.

The names users define workflows with are re-exported from :mod:`wfe_core`.
"""

from __future__ import annotations

from wfe_core import (
    ErrorBehavior,
    ExecutionResult,
    LifecycleEvent,
    LifecycleEventType,
    Page,
    PointerStatus,
    StepBody,
    StepContext,
    StepMiddleware,
    WorkflowBuilder,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowMiddleware,
    WorkflowStatus,
)
from wfe_host.client import WorkflowClient
from wfe_host.host import WorkflowHost
from wfe_host.options import HostOptions
from wfe_host.runtime.oneshot import run_workflow
from wfe_host.runtime.stuck import StuckWorkflow

__all__ = [
    "ErrorBehavior",
    "ExecutionResult",
    "HostOptions",
    "LifecycleEvent",
    "LifecycleEventType",
    "Page",
    "PointerStatus",
    "StepBody",
    "StepContext",
    "StepMiddleware",
    "StuckWorkflow",
    "WorkflowBuilder",
    "WorkflowClient",
    "WorkflowDefinition",
    "WorkflowHost",
    "WorkflowInstance",
    "WorkflowMiddleware",
    "WorkflowStatus",
    "run_workflow",
]
