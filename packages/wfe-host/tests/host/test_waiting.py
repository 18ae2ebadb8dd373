"""How ``wait_for_workflow`` is woken: without a lifecycle subscription per waiter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest
from wfe_host_tests_polling import until

from wfe_core import ExecutionResult, WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryLifecycle, MemoryLock, MemoryPersistence, MemoryQueue
from wfe_core.providers import capabilities
from wfe_host import HostOptions, WorkflowClient, WorkflowHost

if TYPE_CHECKING:
    from wfe_core import StepContext, WorkflowInstance
    from wfe_core.models import LifecycleEvent
    from wfe_core.providers import LivePart

pytestmark = pytest.mark.anyio


@attrs.define
class Counter:
    count: int = 0


def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


def gated() -> Any:
    return WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated")


class SharedLifecycle(MemoryLifecycle):
    """Stands for a lifecycle publisher shared between processes (a message broker)."""

    capabilities = frozenset({capabilities.DISTRIBUTED})


class SharedPersistence(MemoryPersistence):
    """Stands for a store shared between processes (a database)."""

    capabilities = MemoryPersistence.capabilities | {capabilities.DURABLE}


class _Broken:
    def __aiter__(self) -> _Broken:
        return self

    async def __anext__(self) -> LifecycleEvent:
        raise RuntimeError("the broker is down")


class BrokenLifecycle(SharedLifecycle):
    """A distributed publisher whose subscriptions fail."""

    def subscribe(self) -> Any:
        return _Broken()


async def _wait_all(host: WorkflowClient, ids: list[str]) -> list[WorkflowInstance]:
    results: dict[str, WorkflowInstance] = {}

    async def wait(workflow_id: str) -> None:
        results[workflow_id] = await host.wait_for_workflow(workflow_id, timeout=20)

    async with anyio.create_task_group() as tg:
        for workflow_id in ids:
            tg.start_soon(wait, workflow_id)
    return [results[i] for i in ids]


async def test_waiters_do_not_subscribe_to_lifecycle_events() -> None:
    lifecycle = MemoryLifecycle()
    async with WorkflowHost(lifecycle=lifecycle) as host:
        host.register(gated())
        ids = [await host.start_workflow("gated") for _ in range(20)]
        async with anyio.create_task_group() as tg:
            finished: list[WorkflowInstance] = []

            async def wait_all() -> None:
                finished.extend(await _wait_all(host, ids))

            tg.start_soon(wait_all)
            await until(lambda: len(host.awaited_workflows()) == len(ids))
            # A process-local publisher: this host's own completions wake its waiters.
            assert lifecycle.subscriber_count == 0
            await host.publish_event("go", "k")
        assert [i.status for i in finished] == [WorkflowStatus.COMPLETE] * len(ids)
        assert host.awaited_workflows() == frozenset()


async def test_one_watcher_per_host_for_a_distributed_publisher() -> None:
    persistence, lock, queue = MemoryPersistence(), MemoryLock(), MemoryQueue()
    lifecycle = SharedLifecycle()
    client = WorkflowClient(persistence, lock, queue, lifecycle=lifecycle)
    worker = WorkflowHost(persistence, lock, queue, lifecycle=lifecycle)
    async with client, worker:
        client.register(gated())
        worker.register(gated())
        # Each host has its own waiters: the client learns of the worker's completions only
        # from the lifecycle events (the store is not shared, so it never reads again).
        ids = [await client.start_workflow("gated") for _ in range(10)]
        async with anyio.create_task_group() as tg:
            finished: list[WorkflowInstance] = []

            async def wait_all() -> None:
                finished.extend(await _wait_all(client, ids))

            tg.start_soon(wait_all)
            await until(lambda: len(client.awaited_workflows()) == len(ids))
            assert worker.awaited_workflows() == frozenset()
            assert lifecycle.subscriber_count == 2  # one watcher per host
            await client.publish_event("go", "k")
        assert [i.status for i in finished] == [WorkflowStatus.COMPLETE] * len(ids)
        assert client.awaited_workflows() == frozenset()


async def test_hosts_sharing_a_local_publisher_wake_each_others_waiters() -> None:
    persistence, lock, queue = MemoryPersistence(), MemoryLock(), MemoryQueue()
    lifecycle = MemoryLifecycle()
    async with (
        WorkflowClient(persistence, lock, queue, lifecycle=lifecycle) as client,
        WorkflowHost(persistence, lock, queue, lifecycle=lifecycle) as worker,
    ):
        client.register(gated())
        worker.register(gated())
        workflow_id = await client.start_workflow("gated")
        async with anyio.create_task_group() as tg:
            finished: list[WorkflowInstance] = []

            async def wait() -> None:
                finished.append(await client.wait_for_workflow(workflow_id, timeout=10))

            tg.start_soon(wait)
            await until(lambda: workflow_id in client.awaited_workflows())
            # One waiter table for both: the worker wakes the client's waiter itself.
            assert workflow_id in worker.awaited_workflows()
            assert lifecycle.subscriber_count == 0
            await client.publish_event("go", "k")
        assert finished[0].status == WorkflowStatus.COMPLETE


async def test_waiters_read_again_while_the_watcher_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    persistence, lock, queue = SharedPersistence(), MemoryLock(), MemoryQueue()
    client = WorkflowClient(persistence, lock, queue, lifecycle=BrokenLifecycle())
    # The worker's own publisher: nothing it publishes reaches the client.
    worker = WorkflowHost(persistence, lock, queue)
    async with client, worker:
        client.register(gated())
        worker.register(gated())
        workflow_id = await client.start_workflow("gated")
        await client.publish_event("go", "k")
        instance = await client.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert "watching lifecycle events failed" in caplog.text


async def test_a_finished_workflow_is_returned_at_once() -> None:
    async with WorkflowHost() as host:
        host.register(WorkflowBuilder(Counter).start_with(bump).build("once"))
        workflow_id = await host.start_workflow("once")
        first = await host.wait_for_workflow(workflow_id, timeout=10)
        with anyio.fail_after(1):
            again = await host.wait_for_workflow(workflow_id, timeout=10)
    assert first.status == again.status == WorkflowStatus.COMPLETE
    assert host.awaited_workflows() == frozenset()


class CountingPersistence(MemoryPersistence):
    """Counts the reads of each workflow (whole or its live part)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        self.reads[workflow_id] = self.reads.get(workflow_id, 0) + 1
        return await super().get_workflow(workflow_id)

    async def get_live_part(self, workflow_id: str) -> LivePart:
        self.reads[workflow_id] = self.reads.get(workflow_id, 0) + 1
        return await super().get_live_part(workflow_id)


class CountingSharedPersistence(CountingPersistence, SharedPersistence):
    pass


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "durable"])
async def test_waiting_for_a_workflow_this_host_runs_reads_it_only_when_needed(
    durable: bool,
) -> None:
    """Started here and running: the waiter relies on the pass to wake it instead of reading
    the workflow. When the pass ends without finishing it (it waits for an event), the waiter
    reads it once, and it is still woken when a later pass finishes it."""
    persistence = CountingSharedPersistence() if durable else CountingPersistence()
    opened = anyio.Event()

    async def gate(ctx: StepContext) -> None:
        await opened.wait()

    definition = (
        WorkflowBuilder(Counter).start_with(gate).wait_for("go", key="k").then(bump).build("g")
    )
    async with WorkflowHost(persistence) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("g")
        async with anyio.create_task_group() as tg:
            done: list[WorkflowInstance] = []

            async def wait() -> None:
                done.append(await host.wait_for_workflow(workflow_id, timeout=10))

            tg.start_soon(wait)
            await until(lambda: workflow_id in host.awaited_workflows())
            await anyio.sleep(0.05)
            assert workflow_id in host.passes.running
            assert persistence.reads.get(workflow_id, 0) == 0
            opened.set()
            await until(lambda: workflow_id not in host.passes.running)
            await until(lambda: persistence.reads.get(workflow_id) == 1)
            assert not done
            await host.publish_event("go", "k")
        assert done[0].status == WorkflowStatus.COMPLETE
        assert done[0].data.count == 1


def once() -> Any:
    return WorkflowBuilder(Counter).start_with(bump).build("once")


async def test_work_stored_elsewhere_is_found_after_this_hosts_next_pass() -> None:
    """On a store private to this process the scheduler sleeps until something wakes it:
    each pass of this host that ends makes it look at the stored due times again (within
    its least interval between two looks), so work another client stored (and queued in a
    queue no worker of this host reads) does not wait for the recovery look."""
    persistence, lock = MemoryPersistence(), MemoryLock()
    recovery = HostOptions(recovery_seconds=600.0)
    async with (
        WorkflowClient(persistence, lock, MemoryQueue()) as client,
        WorkflowHost(persistence, lock, MemoryQueue(), options=recovery) as worker,
    ):
        client.register(once())
        worker.register(once())
        # The worker's scheduler has looked at the (empty) store by now, and sleeps.
        await anyio.sleep(0.2)
        left = await client.start_workflow("once")
        # Passes of the worker's own, one after the other: each ending asks for a look,
        # whether or not one is already put off to keep the interval.
        for _ in range(3):
            own = await worker.start_workflow("once")
            await worker.wait_for_workflow(own, timeout=10)
        instance = await worker.wait_for_workflow(left, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.count == 1


def odd_values(ctx: StepContext) -> ExecutionResult:
    # Values JSON gives back otherwise: a tuple, an int key.
    ctx.data["pair"] = (1, 2)
    ctx.data[7] = {"nested": ("x",)}
    return ExecutionResult.outcome((3, 4))


async def test_waiters_woken_by_the_finishing_host_get_the_instance_as_stored() -> None:
    """On a store shared with other processes the host that finishes a workflow hands its
    waiters the instance as stored instead of having them read it back: what they get is
    what a read gives, each waiter a copy of its own."""
    persistence = CountingSharedPersistence()
    opened = anyio.Event()

    async def gate(ctx: StepContext) -> None:
        await opened.wait()

    definition = WorkflowBuilder(dict).start_with(gate).then(odd_values).build("odd")
    async with WorkflowHost(persistence) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("odd", {"items": [1]})
        done: list[WorkflowInstance] = []

        async def wait() -> None:
            done.append(await host.wait_for_workflow(workflow_id, timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            tg.start_soon(wait)
            await until(lambda: workflow_id in host.awaited_workflows())
            opened.set()
        assert persistence.reads.get(workflow_id, 0) == 0
        read = await host.get_workflow(workflow_id)
    first, second = done
    assert first == second == read
    assert first.data == {"items": [1], "pair": [1, 2], "7": {"nested": ["x"]}}
    assert first.pointers[1].outcome == [3, 4]
    first.data["items"].append(2)
    assert second.data["items"] == [1]
