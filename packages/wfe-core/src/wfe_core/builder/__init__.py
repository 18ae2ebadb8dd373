"""The fluent builder of workflow definitions."""

from __future__ import annotations

from wfe_core.builder.parallel import ParallelBuilder
from wfe_core.builder.workflow import BranchBuilder, WorkflowBuilder

__all__ = ["BranchBuilder", "ParallelBuilder", "WorkflowBuilder"]
