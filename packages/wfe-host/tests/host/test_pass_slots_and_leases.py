"""What a host's passes share: ``concurrency`` slots (new workflows wait a moment for one),
and one task renewing their leases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import attrs
import pytest
from wfe_host_tests_polling import until

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.errors import LockNotHeldError
from wfe_core.memory import MemoryLock, MemoryQueue
from wfe_core.providers import QueueName
from wfe_host import HostOptions, WorkflowHost
from wfe_host.runtime import passes

if TYPE_CHECKING:
    from wfe_core import StepContext
    from wfe_core.providers import Lease

pytestmark = pytest.mark.anyio


@attrs.define
class Gate:
    """Steps that wait for ``opened``, counting how many wait at once."""

    opened: anyio.Event = attrs.field(factory=anyio.Event)
    inside: int = 0
    most: int = 0

    async def enter(self, ctx: StepContext) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.opened.wait()
        finally:
            self.inside -= 1


async def test_concurrency_bounds_every_pass_however_it_started() -> None:
    """Workflows started here and workflows handed out by the queue share the slots: with
    ``concurrency`` 2, never more than two passes (here: their steps) run at once."""
    gate = Gate()
    async with WorkflowHost(options=HostOptions(concurrency=2)) as host:
        host.register(WorkflowBuilder(dict).start_with(gate.enter).build("gated"))
        ids = [await host.start_workflow("gated") for _ in range(6)]
        await until(lambda: gate.inside == 2)
        await anyio.sleep(0.2)  # time for a third pass to start, were it allowed to
        assert gate.most == 2
        gate.opened.set()
        for workflow_id in ids:
            instance = await host.wait_for_workflow(workflow_id, timeout=10)
            assert instance.status == WorkflowStatus.COMPLETE
        assert gate.most == 2
        assert host.passes.running == {}


async def test_a_pass_longer_than_its_lease_keeps_it() -> None:
    """The host renews the lease of a running pass, so no other worker can take the
    instance however long its step runs."""
    gate = Gate()
    async with WorkflowHost(options=HostOptions(lease_seconds=0.3)) as host:
        host.register(WorkflowBuilder(dict).start_with(gate.enter).build("long"))
        workflow_id = await host.start_workflow("long")
        await until(lambda: gate.inside == 1)
        for _ in range(8):  # 1.2 s: four lease times
            await anyio.sleep(0.15)
            assert await host.lock.acquire(workflow_id, owner="another worker", ttl=1) is None
        gate.opened.set()
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
        assert instance.status == WorkflowStatus.COMPLETE

        # Released as the pass ends (just after the write that finished the workflow).
        async def free() -> bool:
            return await host.lock.acquire(workflow_id, owner="other", ttl=1) is not None

        await until(free)


class ForgetfulLock(MemoryLock):
    """Refuses to renew a lease once ``forget`` is set, as if it had expired and been taken."""

    forget = False

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        if self.forget:
            self.forget = False
            raise LockNotHeldError(f"lease of {lease.key} is not current")
        return await super().renew(lease, ttl=ttl)


async def test_a_pass_that_lost_its_lease_is_abandoned_and_run_again() -> None:
    """A pass whose lease could not be renewed stops at once (its running step is cancelled,
    its result is not stored), and the instance runs again."""
    lock = ForgetfulLock()
    runs: list[str] = []
    gate = Gate()

    async def step(ctx: StepContext) -> None:
        runs.append("started")
        if len(runs) == 1:
            lock.forget = True
            try:
                await gate.enter(ctx)
            except anyio.get_cancelled_exc_class():
                runs.append("cancelled")
                raise

    async with WorkflowHost(lock=lock, options=HostOptions(lease_seconds=0.3)) as host:
        host.register(WorkflowBuilder(dict).start_with(step).build("lost"))
        workflow_id = await host.start_workflow("lost")
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
        assert instance.status == WorkflowStatus.COMPLETE
        assert runs == ["started", "cancelled", "started"]


class CountingQueue(MemoryQueue):
    """Counts what is queued, by queue."""

    def __init__(self) -> None:
        super().__init__()
        self.enqueued: list[tuple[QueueName, str]] = []

    async def enqueue(self, queue: QueueName, item_id: str) -> None:
        self.enqueued.append((QueueName(queue), item_id))
        await super().enqueue(queue, item_id)


async def test_new_workflows_wait_briefly_for_a_slot_of_their_host() -> None:
    """A burst a little larger than ``concurrency`` runs in the host that started it, as its
    slots free up: nothing goes through the queue, and ``concurrency`` still holds."""
    gate = Gate()
    queue = CountingQueue()
    async with WorkflowHost(queue=queue, options=HostOptions(concurrency=4)) as host:
        host.register(WorkflowBuilder(dict).start_with(gate.enter).build("gated"))
        ids = [await host.start_workflow("gated") for _ in range(6)]
        await until(lambda: gate.inside >= 3)
        await anyio.sleep(0.1)
        assert gate.most <= 4
        gate.opened.set()
        for workflow_id in ids:
            instance = await host.wait_for_workflow(workflow_id, timeout=10)
            assert instance.status == WorkflowStatus.COMPLETE
    assert [item for item in queue.enqueued if item[0] == QueueName.WORKFLOW] == []
    assert gate.most <= 4


class RecordingLock(MemoryLock):
    """Logs each release, into the log a CountingQueue shares."""

    def __init__(self, log: list[tuple[QueueName, str]]) -> None:
        super().__init__()
        self.log = log

    async def release(self, lease: Lease) -> None:
        await super().release(lease)
        self.log.append((QueueName.WORKFLOW, f"released {lease.key}"))


async def test_a_new_workflow_that_waited_in_vain_is_queued_for_any_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When no slot frees up in time, the instance's lease is let go and it is queued, so
    any worker can run it (here the host's own queue consumer, whose slot the wait could
    not have)."""
    monkeypatch.setattr(passes, "START_WAIT", 0.1)
    gate = Gate()
    queue = CountingQueue()
    lock = RecordingLock(queue.enqueued)
    async with WorkflowHost(lock=lock, queue=queue, options=HostOptions(concurrency=2)) as host:
        host.register(WorkflowBuilder(dict).start_with(gate.enter).build("gated"))
        first = await host.start_workflow("gated")
        await until(lambda: gate.inside == 1)  # the queue's consumer holds the other slot
        late = await host.start_workflow("gated")
        await until(lambda: gate.inside == 2)
        assert queue.enqueued == [
            (QueueName.WORKFLOW, f"released {late}"),
            (QueueName.WORKFLOW, late),
        ]
        gate.opened.set()
        for workflow_id in (first, late):
            instance = await host.wait_for_workflow(workflow_id, timeout=10)
            assert instance.status == WorkflowStatus.COMPLETE
