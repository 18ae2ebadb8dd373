"""The child process of the subscription-gap test: ``python _gap_child.py URL``.

It runs a host with workers on ``URL`` whose persistence is the real SQLite one, except that
the process SIGKILLs itself right after the first write that stores an open subscription has
committed: the host never gets to queue the events that subscription should see. (The gap a
chaos run found: an event published before the subscription, already processed, then
stayed processed and the workflow waited forever.)
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from wfe_core import WorkflowBuilder
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from wfe_core.models import WorkflowDefinition, WorkflowInstance

DEFINITION = "gap-flow"
EVENT_NAME = "gap-approval"
EVENT_KEY = "order-7"


@attrs.define
class Approval:
    approved_by: str | None = None
    steps: list[str] = attrs.Factory(list)


def gap_flow() -> WorkflowDefinition:
    """Wait for the approval (published at any time, also before the wait), then record it."""

    def record(ctx: Any) -> None:
        ctx.data.steps.append("after-approval")

    return (
        WorkflowBuilder(Approval)
        .wait_for(EVENT_NAME, key=EVENT_KEY)
        .output(approved_by=lambda step: step.event_data["by"])
        .then(record)
        .build(DEFINITION, version=1)
    )


class DiesAfterSubscribing(SqlitePersistence):
    """Kills its process right after a committed write storing an open subscription."""

    async def persist_workflow(self, instance: WorkflowInstance, **kwargs: Any) -> None:
        await super().persist_workflow(instance, **kwargs)
        if any(not s.terminated for s in kwargs.get("subscriptions", ())):
            os.kill(os.getpid(), signal.SIGKILL)


async def run(url: str) -> None:
    from wfe_host import HostOptions, WorkflowHost

    host = WorkflowHost(
        persistence=DiesAfterSubscribing(url),
        lock=SqliteLock(url),
        queue=SqliteQueue(url),
        options=HostOptions(lease_seconds=1.0),
    )
    async with host:
        host.register(gap_flow())
        await host.start_workflow(DEFINITION, Approval())
        await anyio.sleep(60)  # killed long before


if __name__ == "__main__":
    anyio.run(run, sys.argv[1])
