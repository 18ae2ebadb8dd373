"""The definitions a host knows, by id and version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.errors import DefinitionError, DefinitionNotFoundError

if TYPE_CHECKING:
    from wfe_core.models import WorkflowDefinition


class DefinitionRegistry:
    """Registered workflow definitions; the latest version is used when none is asked for."""

    def __init__(self) -> None:
        self._by_id: dict[str, dict[int, WorkflowDefinition]] = {}

    def add(self, definition: WorkflowDefinition, *, replace: bool = True) -> None:
        """Register ``definition`` (validated); the same id and version replaces the old one
        unless ``replace`` is false."""
        definition.validate()
        versions = self._by_id.setdefault(definition.id, {})
        if not replace and definition.version in versions:
            raise DefinitionError(
                f"workflow {definition.id!r} v{definition.version} is already registered"
            )
        versions[definition.version] = definition

    def get(self, definition_id: str, version: int | None = None) -> WorkflowDefinition:
        """The definition, or :class:`DefinitionNotFoundError` naming what is registered."""
        found = self.find(definition_id, version)
        if found is None:
            known = ", ".join(sorted(self._by_id)) or "none"
            wanted = definition_id if version is None else f"{definition_id} v{version}"
            raise DefinitionNotFoundError(
                f"no workflow definition {wanted!r} is registered (registered: {known})"
            )
        return found

    def find(self, definition_id: str, version: int | None = None) -> WorkflowDefinition | None:
        """The definition, or ``None``."""
        versions = self._by_id.get(definition_id)
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    def __iter__(self):  # type: ignore[no-untyped-def]
        for versions in self._by_id.values():
            yield from versions.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_id.values())
