"""The engine: runs passes over workflow instances (see :mod:`wfe_core.engine.executor`)."""

from __future__ import annotations

from wfe_core.engine.executor import PassEnvironment, WorkflowExecutor
from wfe_core.engine.middleware import CallNext, StepMiddleware, WorkflowMiddleware

__all__ = [
    "CallNext",
    "PassEnvironment",
    "StepMiddleware",
    "WorkflowExecutor",
    "WorkflowMiddleware",
]
