"""The search index contract: find workflow instances by text and filters."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from wfe_core.providers.base import Provider

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core.models import Page, WorkflowInstance


class SearchIndex(Provider):
    """An index the host keeps up to date with every persisted instance.

    ``filters`` keys are instance fields: ``status``, ``definition_id``, ``reference``,
    ``version``, and ``created_after`` / ``created_before`` (datetimes). ``text`` matches the
    reference, description and definition id (and the data, with ``search-by-data``).
    """

    @abstractmethod
    async def index_workflow(self, instance: WorkflowInstance) -> None:
        """Add or replace the entry of ``instance``."""

    @abstractmethod
    async def remove_workflow(self, workflow_id: str) -> None:
        """Drop the entry of ``workflow_id`` (a no-op when absent)."""

    @abstractmethod
    async def search(
        self,
        text: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        skip: int = 0,
        take: int = 20,
    ) -> Page[WorkflowInstance]:
        """Matching instances, best match first, newest first among equals."""
