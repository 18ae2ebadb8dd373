"""Activities across processes on one PostgreSQL database: a host here runs the workflows,
worker processes elsewhere (clients, no workers) take and complete the activities, each
activity exactly once."""

from __future__ import annotations

import json
import os
import sys

import anyio
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus

wfe_host = pytest.importorskip("wfe_host", reason="the end-to-end tests need wfe-host")

pytestmark = pytest.mark.anyio

TIMEOUT = 60

#: A worker process: takes one activity, completes it with what it got plus its name.
WORKER = """
import json, sys
import anyio
from wfe_host import WorkflowClient

async def main():
    url, name = sys.argv[1], sys.argv[2]
    async with WorkflowClient.from_settings({"persistence": url}) as client:
        pending = await client.get_pending_activity("pg-charge", name, timeout=3)
        if pending is None:
            print(json.dumps(None))
            return
        await client.submit_activity_success(
            pending.token, {"by": name, "amount": pending.parameters["amount"]}
        )
        print(json.dumps({"token": pending.token, "workflow_id": pending.workflow_id}))

anyio.run(main)
"""


async def test_worker_processes_share_the_activities_of_a_host(db_url: str) -> None:
    definition = (
        WorkflowBuilder(dict)
        .activity("pg-charge", parameters=lambda data: {"amount": data["amount"]})
        .output(receipt=lambda step: step.result)
        .build("pg-activity")
    )
    async with wfe_host.WorkflowHost.from_settings({"persistence": db_url}) as host:
        host.register(definition)
        workflow_ids = [await host.start_workflow(definition.id, {"amount": n}) for n in (10, 20)]
        env = dict(os.environ)
        processes = [
            await anyio.open_process([sys.executable, "-c", WORKER, db_url, f"proc-{n}"], env=env)
            for n in range(3)
        ]
        outputs: list[object] = []
        with anyio.fail_after(TIMEOUT):
            for process in processes:
                async with process:
                    assert process.stdout is not None
                    out = b"".join([chunk async for chunk in process.stdout])
                    await process.wait()
                    assert process.returncode == 0
                    outputs.append(json.loads(out))
            finished = [await host.wait_for_workflow(w, timeout=TIMEOUT) for w in workflow_ids]
    took = [o for o in outputs if o is not None]
    # Two activities, three takers: each activity taken by one process, the third got none
    # (it waited 3 s, then gave up).
    assert len(took) == 2, outputs
    assert sorted(t["workflow_id"] for t in took) == sorted(workflow_ids)  # type: ignore[index]
    assert all(i.status == WorkflowStatus.COMPLETE for i in finished)
    assert sorted(i.data["receipt"]["amount"] for i in finished) == [10, 20]
    assert len({i.data["receipt"]["by"] for i in finished}) == 2
