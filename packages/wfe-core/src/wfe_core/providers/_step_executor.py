"""The step-executor contract behind YAML ``type:`` names (shell, deno, ...)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from wfe_core.providers._contract import EnforcedABC

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core._results import ExecutionResult
    from wfe_core._step import StepContext


class StepExecutor(EnforcedABC):
    """Runs one step of a declared ``type:`` from its ``config:`` mapping.

    ``validate_config`` runs at load time so mistakes surface before anything runs;
    ``execute`` runs the step (at least once: it may run again after a crash). A subclass
    that does not implement ``execute`` cannot be created
    (:class:`~wfe_core.errors.AbstractProviderError`).
    """

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        """Problems with ``config`` as human-readable messages (empty when it is valid)."""
        return []

    @abstractmethod
    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        """Run the step and say how the workflow goes on."""
