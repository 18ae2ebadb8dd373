"""``run_workflow``: run one workflow to its end from synchronous code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

    from wfe_core.models import WorkflowDefinition, WorkflowInstance


def run_workflow(
    definition: WorkflowDefinition,
    data: Any = None,
    *,
    settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    reference: str | None = None,
) -> WorkflowInstance:
    """Start a host (in-memory providers unless ``settings`` name others), run
    ``definition`` with ``data`` to its end and return the final instance.

    For scripts and tests; it blocks (``anyio.run``), so do not call it from async code.
    Raises :class:`~wfe_core.errors.WorkflowTimeoutError` after ``timeout`` seconds.
    """
    from wfe_host.host import WorkflowHost

    async def main() -> WorkflowInstance:
        host = WorkflowHost() if settings is None else WorkflowHost.from_settings(settings)
        async with host:
            host.register(definition)
            workflow_id = await host.start_workflow(
                definition.id, data, version=definition.version, reference=reference
            )
            return await host.wait_for_workflow(workflow_id, timeout=timeout)

    return anyio.run(main)
