"""Several hosts on one shared store do not duplicate each other's work: the scheduler of
each leaves what fell due lately to whoever queued it, so each workflow is leased (one pass)
once, and still queues what was left behind."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus
from wfe_core.providers import QueueName
from wfe_host import WorkflowHost
from wfe_sqlite import SqliteQueue

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

WORKFLOWS = 40


@attrs.define
class Counter:
    count: int = 0


async def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


flow = WorkflowBuilder(Counter).start_with(bump).then(bump).then(bump).build("shared-flow", 1)


def leases_taken(path: Path) -> int:
    """How many leases the file's lock gave out (its one token counter, which counts every
    acquisition)."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM wfe_lock_tokens WHERE id = 1").fetchone()
    return int(row[0])


async def test_two_hosts_on_one_store_lease_each_workflow_once(tmp_path: Path) -> None:
    path = tmp_path / "wfe.db"
    url = f"sqlite:///{path}"
    settings = {"persistence": url, "queue": url, "lock": url}
    client = WorkflowHost.from_settings({**settings, "host": {"run_workers": False}})
    hosts = [WorkflowHost.from_settings(settings) for _ in range(2)]
    for host in (client, *hosts):
        host.register(flow)
    async with client, hosts[0], hosts[1]:
        before = leases_taken(path)
        ids = [await client.start_workflow("shared-flow", data=Counter()) for _ in range(WORKFLOWS)]
        with anyio.fail_after(60):
            done = [await client.wait_for_workflow(i, timeout=60) for i in ids]
        assert all(d.status == WorkflowStatus.COMPLETE and d.data.count == 3 for d in done)
        # One pass each: no worker ran a second, idle pass over an instance another one ran
        # (queued again by a scheduler that saw it due while it waited or ran).
        assert leases_taken(path) - before == WORKFLOWS


async def test_work_left_behind_on_a_shared_store_is_queued(tmp_path: Path) -> None:
    """An instance stored due whose queue item is gone (taken by a host that died before
    its pass, or lost by the queue) is run by another host's scheduler."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    settings = {"persistence": url, "queue": url, "lock": url}
    # A client stores the instance and queues it; the item is then taken and dropped, as
    # by a host that died before its pass.
    client = WorkflowHost.from_settings({**settings, "host": {"run_workers": False}})
    client.register(flow)
    async with client:
        workflow_id = await client.start_workflow("shared-flow", data=Counter())
    async with SqliteQueue(url) as queue:
        message = await queue.dequeue(QueueName.WORKFLOW)
        assert message is not None
        await queue.ack(message)
        assert await queue.size(QueueName.WORKFLOW) == 0
    host = WorkflowHost.from_settings({**settings, "host": {"recovery_seconds": 2.0}})
    host.register(flow)
    async with host:
        with anyio.fail_after(30):
            done = await host.wait_for_workflow(workflow_id, timeout=30)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data.count == 3
