"""The search index contract: find workflow instances by text and filters."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from wfe_core.providers._base import Provider

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core.models import Page, WorkflowInstance


class SearchIndex(Provider):
    """An index the host keeps up to date with every persisted instance.

    ``filters`` keys are instance fields: ``status``, ``definition_id``, ``reference``,
    ``version`` (equal to the value, or to any member of a list, tuple or set of values);
    ``created_after`` / ``created_before`` and ``completed_after`` / ``completed_before``
    (datetimes: at or after, strictly before; an unfinished instance has no completion time and
    matches no completion bound); and ``data.<dotted.path>`` (the workflow data's value at that
    path equals the given one, compared as text so ``1`` and ``"1"`` agree; a list at the path
    matches when one of its members does). ``text`` matches the reference, description and
    definition id (and the data, with ``search-by-data``). An unknown filter key raises
    :class:`ValueError`. ``Page.total`` counts every match, however many pages there are.

    ``index_workflow`` may be called out of order for one instance (retries, several hosts):
    an entry of a lower ``revision`` than the one indexed must not replace it.
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
