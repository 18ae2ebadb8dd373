"""Finishing a workflow early."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody

if TYPE_CHECKING:
    from wfe_core._step import StepContext


class EndWorkflow(StepBody):
    """Completes the workflow at once, cancelling every other active step."""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.end_workflow()
