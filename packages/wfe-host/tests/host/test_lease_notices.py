"""A worker that finds an instance leased by another says so once, naming the holder and
how long it will wait, instead of waiting in silence."""

from __future__ import annotations

import logging
import os

import anyio
import pytest
from wfe_host_tests_polling import until

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryLock, MemoryPersistence
from wfe_host import WorkflowClient, WorkflowHost

pytestmark = pytest.mark.anyio


async def test_a_busy_instance_is_announced_once_with_its_holder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wfe_host.passes")
    store, lock = MemoryPersistence(), MemoryLock()
    definition = WorkflowBuilder(dict).start_with(lambda ctx: None).build("flow")
    async with WorkflowClient(persistence=store) as client:
        client.register(definition)
        workflow_id = await client.start_workflow("flow")
    async with lock:
        held = await lock.acquire(workflow_id, owner="elsewhere/1", ttl=60)
        assert held is not None
    async with WorkflowHost(persistence=store, lock=lock) as host:
        host.register(definition)
        notice = f"workflow {workflow_id} is leased by elsewhere/1 (process {os.getpid()} on "
        await until(lambda: notice in caplog.text)
        # Tried again (busy, handed back to the queue) without saying it again.
        await anyio.sleep(1.5)
        assert caplog.text.count(notice) == 1
        assert "waiting up to 60 s for that worker to release the lease or for it to lapse" in (
            caplog.text
        )
        await lock.release(held)
        finished = await host.wait_for_workflow(workflow_id, timeout=10)
    assert finished.status == WorkflowStatus.COMPLETE
