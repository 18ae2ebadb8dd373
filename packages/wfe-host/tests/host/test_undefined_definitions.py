"""Bug 4's second half: an instance whose definition version no worker has registered is
visible as such: one error recorded on it (not one per pass), and it is listed by
``list_stuck_workflows`` (``wfe workflows list --stuck``) until a worker that has the version
runs it."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from wfe_host_tests_polling import until

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence
from wfe_core.providers import QueueName
from wfe_host import HostOptions, WorkflowClient, WorkflowHost

pytestmark = pytest.mark.anyio


def _flow(version: int) -> object:
    return WorkflowBuilder(dict).start_with(lambda ctx: None).build("flow", version=version)


async def test_an_unregistered_version_is_recorded_once_and_listed_as_stuck() -> None:
    store = MemoryPersistence()
    v1, v2 = _flow(1), _flow(2)
    async with WorkflowClient(persistence=store) as client:
        client.register(v2)  # type: ignore[arg-type]
        workflow_id = await client.start_workflow("flow", version=2)
        other = await client.start_workflow("flow", version=2)
    async with WorkflowHost(persistence=store) as old_worker:
        old_worker.register(v1)  # type: ignore[arg-type]
        await until(lambda: _errors(store, workflow_id))
        # More passes (queued again, the scheduler's recovery): still one error.
        for _ in range(3):
            await old_worker.queue.enqueue(QueueName.WORKFLOW, workflow_id)
        await until(lambda: old_worker.running_workflows == 0)
        await anyio.sleep(0.1)
        [error] = await store.get_errors(workflow_id)
        assert error.message.startswith(
            f"definition 'flow' v2 is not registered on worker {old_worker.worker_id} "
            "(registered there: v1); it waits for a worker that has it"
        )
        assert error.pointer_id is None
        instance = await old_worker.get_workflow(workflow_id)
        assert instance.status == WorkflowStatus.RUNNABLE  # another worker may have v2

        page = await old_worker.list_stuck_workflows(overdue=timedelta(0))
        assert {s.instance.id for s in page.items} == {workflow_id, other}
        assert page.total == 2
        by_id = {s.instance.id: s for s in page.items}
        assert by_id[workflow_id].last_error == error
        # Due for less than the default minute: not stuck yet.
        assert (await old_worker.list_stuck_workflows()).total == 0
        assert (await old_worker.list_stuck_workflows(definition_id="nope")).total == 0
        with pytest.raises(ValueError, match="overdue must not be negative"):
            await old_worker.list_stuck_workflows(overdue=timedelta(seconds=-1))

    async with WorkflowHost(persistence=store, options=HostOptions()) as new_worker:
        new_worker.register(v2)  # type: ignore[arg-type]
        finished = await new_worker.wait_for_workflow(workflow_id, timeout=10)
        await new_worker.wait_for_workflow(other, timeout=10)
        assert finished.status == WorkflowStatus.COMPLETE
        assert (await new_worker.list_stuck_workflows(overdue=timedelta(0))).total == 0


async def _errors(store: MemoryPersistence, workflow_id: str) -> bool:
    return bool(await store.get_errors(workflow_id))
