"""Waiting in host tests for something another task brings about."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wfe_host import WorkflowClient


async def until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10) -> None:
    """Wait until ``condition()`` holds (it may be async), looking every 10 ms; fail after
    ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            met = condition()
            if await met if inspect.isawaitable(met) else met:
                return
            await anyio.sleep(0.01)


async def until_waiting_for_event(host: WorkflowClient, workflow_id: str) -> None:
    """Wait until the stored workflow has a pointer waiting for an event."""

    async def waiting() -> bool:
        instance = await host.get_workflow(workflow_id)
        return any(p.event_name for p in instance.pointers)

    await until(waiting)
