"""WorkflowClient: starts, reads and controls workflows that the workers of a WorkflowHost
on the same providers run; runs none itself. And the clock the runtime reads."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
from wfe_host_tests_polling import until_waiting_for_event

import wfe_host
from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.errors import WfeError
from wfe_core.memory import MemoryLifecycle, MemoryLock, MemoryPersistence, MemoryQueue
from wfe_core.providers import QueueName
from wfe_host import WorkflowClient, WorkflowHost

if TYPE_CHECKING:
    from wfe_core import StepContext
    from wfe_core.models import WorkflowDefinition

pytestmark = pytest.mark.anyio


@attrs.define
class Counter:
    count: int = 0


def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


def gated() -> WorkflowDefinition:
    return WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated")


@attrs.define
class Providers:
    """One set of in-memory providers, shared by a client and a host as a database would be."""

    persistence: MemoryPersistence = attrs.Factory(MemoryPersistence)
    lock: MemoryLock = attrs.Factory(MemoryLock)
    queue: MemoryQueue = attrs.Factory(MemoryQueue)
    lifecycle: MemoryLifecycle = attrs.Factory(MemoryLifecycle)

    def client(self) -> WorkflowClient:
        return WorkflowClient(self.persistence, self.lock, self.queue, lifecycle=self.lifecycle)

    def host(self) -> WorkflowHost:
        return WorkflowHost(self.persistence, self.lock, self.queue, lifecycle=self.lifecycle)


async def test_a_client_queues_what_it_starts_for_a_host_to_run() -> None:
    shared = Providers()
    async with shared.client() as client:
        client.register(gated())
        workflow_id = await client.start_workflow("gated")
        # Nothing ran it: it is stored runnable with no pointer and queued for any worker.
        stored = await client.get_workflow(workflow_id)
        assert (stored.status, stored.pointers) == (WorkflowStatus.RUNNABLE, [])
        message = await shared.queue.dequeue(QueueName.WORKFLOW, timeout=1)
        assert message is not None
        assert message.item_id == workflow_id
        await shared.queue.requeue(message)
        async with shared.host() as host:
            host.register(gated())
            await until_waiting_for_event(client, workflow_id)
            await client.publish_event("go", "k")
            finished = await client.wait_for_workflow(workflow_id, timeout=10)
    assert (finished.status, finished.data.count) == (WorkflowStatus.COMPLETE, 1)


async def test_a_client_suspends_resumes_and_terminates_what_a_host_runs() -> None:
    shared = Providers()
    async with shared.host() as host, shared.client() as client:
        host.register(gated())
        client.register(gated())
        first = await client.start_workflow("gated")
        second = await client.start_workflow("gated")
        await until_waiting_for_event(client, first)
        await until_waiting_for_event(client, second)

        assert await client.suspend_workflow(first)
        assert not await client.suspend_workflow(first)  # not runnable any more
        assert (await client.get_workflow(first)).status == WorkflowStatus.SUSPENDED
        assert await client.resume_workflow(first)
        assert await client.terminate_workflow(second)

        await client.publish_event("go", "k")
        done = await client.wait_for_workflow(first, timeout=10)
        ended = await client.wait_for_workflow(second, timeout=10)
        page = await client.list_workflows(status="terminated")
    assert (done.status, done.data.count) == (WorkflowStatus.COMPLETE, 1)
    assert ended.status == WorkflowStatus.TERMINATED
    assert [i.id for i in page.items] == [second]


async def test_from_settings_makes_a_client_or_a_host() -> None:
    client = WorkflowClient.from_settings({"persistence": "memory"})
    host = WorkflowHost.from_settings({"persistence": "memory"})
    assert type(client) is WorkflowClient
    assert type(host) is WorkflowHost
    async with client:
        assert (await client.list_workflows()).total == 0
        with pytest.raises(WfeError, match="this WorkflowClient is already running"):
            await client.__aenter__()


class MovableClock:
    """A clock that stands still until moved."""

    def __init__(self, now: datetime) -> None:
        self.time = now

    def now(self) -> datetime:
        return self.time

    def advance(self, delta: timedelta) -> None:
        self.time += delta


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC).replace(microsecond=0))


async def test_the_host_reads_its_clock(clock: MovableClock) -> None:
    once = WorkflowBuilder(Counter).start_with(bump).build("once")
    async with WorkflowHost(clock=clock) as host:
        host.register(once)
        workflow_id = await host.start_workflow("once")
        finished = await host.wait_for_workflow(workflow_id, timeout=10)
        assert finished.create_time == clock.now()
        # The passes hand the clock to the executor: what it records is on it too.
        assert finished.complete_time == clock.now()
        assert {p.end_time for p in finished.pointers} == {clock.now()}
        event_id = await host.publish_event("nobody", "k")
        assert (await host.persistence.get_event(event_id)).time == clock.now()
        # Finished a moment ago by this clock: kept; eight days later: purged.
        assert await host.purge(older_than=timedelta(days=7)) == 0
        clock.advance(timedelta(days=8))
        assert await host.purge(older_than=timedelta(days=7)) == 1
    assert host.clock is clock


def test_the_runtime_reads_the_time_only_from_its_clock() -> None:
    """A guard beside the test above: no module of the runtime reads the wall clock itself
    (``utcnow()``, ``datetime.now()``), so a host given a clock runs on it alone."""
    package = Path(wfe_host.__file__).parent
    modules = [package / "client.py", package / "host.py", *sorted(package.glob("runtime/*.py"))]
    found = []
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            called = node.func if isinstance(node, ast.Call) else None
            name = ast.unparse(called) if called is not None else ""
            if name.endswith(("utcnow", "datetime.now", "time.time")):
                found.append(f"{module.name}:{node.lineno}: {name}()")
    assert not found, found
