"""The fluent builder of workflow definitions.

Internal module layout: import the builders from :mod:`wfe_core`."""

from __future__ import annotations

from wfe_core.builder._parallel import ParallelBuilder
from wfe_core.builder._workflow import BranchBuilder, WorkflowBuilder

__all__ = ["BranchBuilder", "ParallelBuilder", "WorkflowBuilder"]
