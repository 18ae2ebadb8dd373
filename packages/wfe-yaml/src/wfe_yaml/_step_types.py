"""The step types (``type:`` names) a load may use, each executor built once per load."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.plugins import StepExecutorSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core.providers import StepExecutor


class StepTypes:
    """The executors by step type name; ``None`` means the installed ones (found when first
    asked, so a load that fails early never imports plugins)."""

    def __init__(self, sources: Mapping[str, StepExecutorSpec | StepExecutor] | None) -> None:
        self._sources = sources
        self._executors: dict[str, StepExecutor] = {}

    def names(self) -> list[str]:
        """The known step types."""
        return sorted(self._all())

    def _all(self) -> Mapping[str, StepExecutorSpec | StepExecutor]:
        if self._sources is None:
            from wfe_yaml.discovery import installed_step_executors

            self._sources = installed_step_executors()
        return self._sources

    def get(self, name: str) -> StepExecutor | None:
        """The executor of step type ``name`` (built once per load), ``None`` if unknown."""
        if name in self._executors:
            return self._executors[name]
        source = self._all().get(name)
        if source is None:
            return None
        executor = source.factory() if isinstance(source, StepExecutorSpec) else source
        self._executors[name] = executor
        return executor
