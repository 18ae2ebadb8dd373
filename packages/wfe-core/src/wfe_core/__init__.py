"""WFE core: models, builder, executor, provider contracts, in-memory providers and
conformance suites of the WFE workflow engine."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from wfe_core._results import ExecutionResult
from wfe_core._runtime import HostContext
from wfe_core._step import StepBody, StepContext
from wfe_core.builder import ParallelBuilder, WorkflowBuilder
from wfe_core.engine import CallNext, StepMiddleware, WorkflowExecutor, WorkflowMiddleware
from wfe_core.models import (
    ErrorBehavior,
    Event,
    ExecutionPointer,
    LifecycleEvent,
    LifecycleEventType,
    Page,
    PointerStatus,
    StepDefinition,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.plugins import hookimpl
from wfe_core.primitives import ChildWorkflowError

try:
    __version__ = version("wfe-core")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "CallNext",
    "ChildWorkflowError",
    "ErrorBehavior",
    "Event",
    "ExecutionPointer",
    "ExecutionResult",
    "HostContext",
    "LifecycleEvent",
    "LifecycleEventType",
    "Page",
    "ParallelBuilder",
    "PointerStatus",
    "StepBody",
    "StepContext",
    "StepDefinition",
    "StepMiddleware",
    "WorkflowBuilder",
    "WorkflowDefinition",
    "WorkflowExecutor",
    "WorkflowInstance",
    "WorkflowMiddleware",
    "WorkflowStatus",
    "__version__",
    "hookimpl",
]
