"""What a running step may ask of the host it runs in (``ctx.host``).

Core never imports the host package; this protocol is the seam. ``wfe_host.WorkflowHost``
implements it. Internal module: import ``HostContext`` from :mod:`wfe_core`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from wfe_core.models._instance import WorkflowInstance


class HostContext(Protocol):
    """The host methods steps use: start workflows, publish events, read workflows."""

    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        version: int | None = None,
        reference: str | None = None,
        *,
        parent_workflow_id: str | None = None,
        parent_pointer_id: str | None = None,
        workflow_id: str | None = None,
    ) -> str:
        """Start a workflow; returns its id (``workflow_id`` when given and new)."""
        ...

    async def publish_event(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
    ) -> str:
        """Store an event and queue it for delivery; returns the event id."""
        ...

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance, its data restored to the definition's data type."""
        ...
