"""Finishing a workflow early."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.results import ExecutionResult
from wfe_core.step import StepBody

if TYPE_CHECKING:
    from wfe_core.step import StepContext


class EndWorkflow(StepBody):
    """Completes the workflow at once, cancelling every other active step."""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.end_workflow()
