"""The engine: runs passes over workflow instances (see :mod:`wfe_core.engine._executor`).

Internal to wfe-core: other distributions get ``WorkflowExecutor`` and the middleware types
from :mod:`wfe_core`, and the rest they need from :mod:`wfe_core.spi`."""

from __future__ import annotations

from wfe_core.engine._executor import PassEnvironment, WorkflowExecutor
from wfe_core.engine.middleware import CallNext, StepMiddleware, WorkflowMiddleware

__all__ = [
    "CallNext",
    "PassEnvironment",
    "StepMiddleware",
    "WorkflowExecutor",
    "WorkflowMiddleware",
]
