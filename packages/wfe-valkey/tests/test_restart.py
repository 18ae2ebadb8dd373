"""Valkey restarted mid-run, losing every key: hosts reconnect and carry on, the recovery sweep
queues again the work still recorded in persistence, and no workflow is lost."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core import WorkflowStatus
from wfe_host import HostOptions, WorkflowHost
from wfe_sqlite import SqlitePersistence
from wfe_valkey.lifecycle import ValkeyLifecycle
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.queue import ValkeyQueue

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import ModuleType

    from wfe_valkey.options import ValkeyOptions
    from wfe_valkey.testing import ValkeyTestServer


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def until(condition: Callable[[], bool]) -> None:
    while True:
        if condition():
            return
        await anyio.sleep(0.01)


def make_host(
    child: ModuleType, db_url: str, url: str, options: ValkeyOptions, *, workers: bool
) -> WorkflowHost:
    host = WorkflowHost(
        SqlitePersistence(db_url),
        ValkeyLock(url, options),
        ValkeyQueue(url, options),
        lifecycle=ValkeyLifecycle(url, options),
        options=HostOptions(lease_seconds=1.5, run_workers=workers),
    )
    host.scheduler.recovery_seconds = child.RECOVERY_SECONDS
    return host


@pytest.mark.anyio
async def test_hosts_carry_on_after_valkey_restarts_and_loses_everything(
    tmp_path: Path, restartable: ValkeyTestServer, options: ValkeyOptions, child: ModuleType
) -> None:
    steps: tuple[str, ...] = child.STEPS
    side_effects = tmp_path / "side-effects.txt"
    definition = child.chaos_flow(str(side_effects))
    db_url = f"sqlite:///{tmp_path}/wfe.db"
    count = 16
    url = restartable.url
    one = make_host(child, db_url, url, options, workers=True)
    two = make_host(child, db_url, url, options, workers=True)
    # A client that only waits: woken by lifecycle events, it must also notice the ones the
    # restart lost (its subscription ends with a gap; it reads persistence again).
    client = make_host(child, db_url, url, options, workers=False)
    async with one, two, client:
        for host in (one, two, client):
            host.register(definition)
        ids = [await client.start_workflow("chaos-flow") for _ in range(count)]
        finished = {}

        async def wait(workflow_id: str) -> None:
            finished[workflow_id] = await client.wait_for_workflow(workflow_id, timeout=90)

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for workflow_id in ids:
                    tg.start_soon(wait, workflow_id)
                await until(lambda: len(lines(side_effects)) >= count)
                restartable.restart()  # every lease, queued item and subscription is gone
                restarted_at = len(lines(side_effects))
    assert restarted_at < count * len(steps), "everything finished before the restart"
    for workflow_id in ids:
        instance = finished[workflow_id]
        assert instance.status == WorkflowStatus.COMPLETE, instance
        # Each transition applied once: the data saw each step once, in order.
        assert instance.data.log == list(steps)
        assert instance.data.count == len(steps)
    runs = Counter((workflow, step) for _, workflow, step, _ in lines(side_effects))
    assert set(runs) == {(i, s) for i in ids for s in steps}
    # A step runs again only where the restart cut its pass short (at most one per workflow).
    assert sum(n - 1 for n in runs.values()) <= count
    # After the restart the hosts queued the unfinished work again and took new leases.
    async with SqlitePersistence(db_url) as store:
        for workflow_id in ids:
            assert (await store.get_workflow(workflow_id)).status == WorkflowStatus.COMPLETE


@pytest.mark.anyio
async def test_a_waiter_sees_a_workflow_finished_while_valkey_was_down(
    tmp_path: Path, restartable: ValkeyTestServer, options: ValkeyOptions, child: ModuleType
) -> None:
    db_url = f"sqlite:///{tmp_path}/wfe.db"
    definition = child.chaos_flow(str(tmp_path / "side-effects.txt"))
    # A client that runs no workers: it learns of finishes from lifecycle events only.
    client = make_host(child, db_url, restartable.url, options, workers=False)
    async with client, SqlitePersistence(db_url) as other_process:
        client.register(definition)
        workflow_id = await client.start_workflow("chaos-flow")
        result: list[WorkflowStatus] = []

        async def wait() -> None:
            result.append((await client.wait_for_workflow(workflow_id, timeout=60)).status)

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.3)
                restartable.stop()
                # Another host finishes it while Valkey is down: its event reaches nobody.
                instance = await other_process.get_workflow(workflow_id)
                instance.status = WorkflowStatus.COMPLETE
                await other_process.persist_workflow(instance)
                await anyio.sleep(1.5)
                restartable.start()
        assert result == [WorkflowStatus.COMPLETE]
