"""Event delivery racing with a subscription that opens while the event is delivered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest
from wfe_host_tests_polling import until_waiting_for_event

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence
from wfe_core.providers import QueueName
from wfe_host import HostOptions, WorkflowHost
from wfe_sqlite import SqlitePersistence

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from wfe_core import StepContext

pytestmark = pytest.mark.anyio


@attrs.define
class Counter:
    count: int = 0


def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


class HookedPersistence(MemoryPersistence):
    """Runs ``before_mark`` once, just before an event is first marked processed."""

    before_mark: Callable[[], Awaitable[Any]] | None = None

    async def mark_event_processed(self, event_id: str) -> None:
        hook, self.before_mark = self.before_mark, None
        if hook is not None:
            await hook()
        await super().mark_event_processed(event_id)


async def test_a_subscription_opened_during_delivery_gets_the_event() -> None:
    persistence = HookedPersistence()
    async with WorkflowHost(persistence, options=HostOptions(run_workers=False)) as host:
        host.register(WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated"))
        early = await host.start_workflow("gated")
        await host.passes.process(early)  # subscribes
        late = await host.start_workflow("gated")
        event_id = await host.publish_event("go", "k")
        # While the event is delivered to the early subscription, the late workflow's pass
        # subscribes: it marks the event unprocessed and queues it again, before the delivery
        # marks it processed.
        persistence.before_mark = lambda: host.passes.process(late)
        assert await host.events.process(event_id) is None
        for workflow_id in (early, late):
            instance = await host.get_workflow(workflow_id)
            assert instance.pointers[0].event_published, workflow_id
        # The copy queued by the late subscription finds nothing left to do.
        assert await host.events.process(event_id) is None
        for workflow_id in (early, late):
            await host.passes.process(workflow_id)
            assert (await host.get_workflow(workflow_id)).status == WorkflowStatus.COMPLETE
        assert (await persistence.get_event(event_id)).is_processed


async def test_an_event_for_a_workflow_another_worker_holds_is_delivered_after_it() -> None:
    """publish_event delivers at once in this host; when another worker holds the workflow,
    the event goes through the queue and arrives once the other worker lets go."""
    async with WorkflowHost() as host:
        host.register(WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated"))
        workflow_id = await host.start_workflow("gated")
        await until_waiting_for_event(host, workflow_id)
        # The pass that stored the wait lets go of the lease once it has ended.
        lease = await host.lock.acquire(workflow_id, owner="another worker", ttl=30, wait=5)
        assert lease is not None
        event_id = await host.publish_event("go", "k")
        await anyio.sleep(0.2)
        instance = await host.get_workflow(workflow_id)
        assert not instance.pointers[0].event_published
        await host.lock.release(lease)
        done = await host.wait_for_workflow(workflow_id, timeout=10)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data.count == 1
        for _ in range(500):  # marked processed just after the delivery
            if (await host.persistence.get_event(event_id)).is_processed:
                break
            await anyio.sleep(0.01)
        assert (await host.persistence.get_event(event_id)).is_processed


def failing_events(base: type[Any]) -> type[Any]:
    class FailingEvents(base):  # type: ignore[misc]
        """Refuses to store events."""

        async def create_event(self, event: Any) -> None:
            raise RuntimeError("disk full")

    return FailingEvents


def gated_events(base: type[Any]) -> type[Any]:
    class GatedEvents(base):  # type: ignore[misc]
        """Stores an event only once ``gate`` is set."""

        gate: anyio.Event

        async def create_event(self, event: Any) -> None:
            await self.gate.wait()
            await super().create_event(event)

    return GatedEvents


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[type[Any]], Any]:
    """Makes a persistence of the class a test built over memory's or SQLite's (the
    delivery that overlaps the event's store with the workflow's lease, for remote stores,
    is tested on PostgreSQL: wfe-postgres's tests/test_event_path.py)."""

    def make(wrap: Callable[[type[Any]], type[Any]]) -> Any:
        if request.param == "memory":
            return wrap(MemoryPersistence)()
        return wrap(SqlitePersistence)(f"sqlite:///{tmp_path / 'wfe.db'}")

    return make


async def test_an_event_that_could_not_be_stored_is_not_delivered(
    store: Callable[[Callable[[type[Any]], type[Any]]], Any],
) -> None:
    """The host starts delivering while it stores the event; a failed store delivers
    nothing, and the caller gets the error."""
    async with WorkflowHost(store(failing_events)) as host:
        host.register(WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated"))
        workflow_id = await host.start_workflow("gated")
        await until_waiting_for_event(host, workflow_id)
        with pytest.raises(RuntimeError, match="disk full"):
            await host.publish_event("go", "k")
        await anyio.sleep(0.2)
        instance = await host.get_workflow(workflow_id)
        assert instance.status == WorkflowStatus.RUNNABLE
        assert not any(p.event_published for p in instance.pointers)
        # The delivery may have taken the workflow's lease while the event was being
        # stored: it let go.
        lease = await host.lock.acquire(workflow_id, owner="another worker", ttl=30)
        assert lease is not None


async def test_a_delivery_changes_nothing_until_its_event_is_stored(
    store: Callable[[Callable[[type[Any]], type[Any]]], Any],
) -> None:
    """While the event is being stored, the delivery may already hold the workflow (its
    lease, so no other worker runs it meanwhile), but changes nothing before the event is
    stored; then the workflow goes on."""
    persistence = store(gated_events)
    persistence.gate = anyio.Event()
    async with WorkflowHost(persistence) as host:
        host.register(WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("gated"))
        workflow_id = await host.start_workflow("gated")
        await until_waiting_for_event(host, workflow_id)
        async with anyio.create_task_group() as tg:
            tg.start_soon(host.publish_event, "go", "k")
            await anyio.sleep(0.2)
            instance = await host.get_workflow(workflow_id)
            assert instance.status == WorkflowStatus.RUNNABLE
            assert not any(p.event_published for p in instance.pointers)
            assert instance.data.count == 0
            persistence.gate.set()
        done = await host.wait_for_workflow(workflow_id, timeout=10)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data.count == 1


class CountingPersistence(MemoryPersistence):
    """Counts the stored events the host reads one by one (each delivery reads its event)."""

    reads = 0

    async def get_event(self, event_id: str) -> Any:
        self.reads += 1
        return await super().get_event(event_id)


async def _drain(host: WorkflowHost) -> list[str]:
    """The event ids queued for delivery, taken off the queue."""
    queued: list[str] = []
    while (message := await host.queue.dequeue(QueueName.EVENT, timeout=0)) is not None:
        queued.append(message.item_id)
        await host.queue.ack(message)
    return queued


async def test_a_new_wait_on_a_key_with_a_long_history_gets_one_event_delivered() -> None:
    # A key used for a long time: every new wait on it gets the earliest event (it matches
    # them all), and only that one is reopened and delivered again. Delivering the whole
    # history to each new wait made a reused key's waits slower run after run.
    persistence = CountingPersistence()
    async with WorkflowHost(persistence, options=HostOptions(run_workers=False)) as host:
        host.register(WorkflowBuilder(Counter).wait_for("go", key="k").then(bump).build("w"))
        history = [await host.publish_event("go", "k", n) for n in range(30)]
        for event_id in history:  # delivered to nobody: processed
            assert await host.events.process(event_id) is None
        assert len(await _drain(host)) == len(history)
        workflow_id = await host.start_workflow("w")
        await host.passes.process(workflow_id)  # subscribes, and queues what it matches
        assert await _drain(host) == history[:1]
        assert list(await persistence.get_runnable_events(datetime.now(UTC))) == history[:1]
        persistence.reads = 0
        assert await host.events.process(history[0]) is None
        await host.passes.process(workflow_id)
        instance = await host.get_workflow(workflow_id)
        assert instance.status == WorkflowStatus.COMPLETE
        assert instance.pointers[0].event_data == 0
        assert persistence.reads == 1


class _CountsWholeReads:
    """Counts the reads of a whole instance or of its finished pointers (a store's own
    reads, not the live part's)."""

    whole_reads = 0

    async def get_workflow(self, workflow_id: str) -> Any:
        self.whole_reads += 1
        return await super().get_workflow(workflow_id)  # type: ignore[misc]

    async def get_pointers(self, workflow_id: str, **page: Any) -> Any:
        self.whole_reads += 1
        return await super().get_pointers(workflow_id, **page)  # type: ignore[misc]


class _CountingMemory(_CountsWholeReads, MemoryPersistence):
    pass


class _CountingSqlite(_CountsWholeReads, SqlitePersistence):
    pass


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_an_event_after_a_long_history_is_delivered_from_the_live_part(
    backend: str, tmp_path: Path
) -> None:
    """A workflow that ran many steps before it waits gets its event without the store
    reading its finished steps: a delivery costs the same after 10,000 steps as after 10
    (a loop of waits stays linear). The event reaches the step after the wait, and the
    stored history is whole afterwards."""
    steps = 60
    persistence: _CountsWholeReads
    if backend == "memory":
        persistence = _CountingMemory()
    else:
        persistence = _CountingSqlite(f"sqlite:///{tmp_path / 'wfe.db'}")
    release = anyio.Event()
    resumed = anyio.Event()

    async def after_wait(ctx: StepContext) -> None:
        resumed.set()
        await release.wait()

    def got(ctx: StepContext) -> None:
        ctx.data.count = 100

    flow = (
        WorkflowBuilder(Counter)
        .for_each(lambda data: range(steps), lambda body: body.start_with(bump), parallel=False)
        .wait_for("go", key="k")
        .then(after_wait)
        .then(got)
        .build("long-wait")
    )
    async with WorkflowHost(persistence) as host:  # type: ignore[arg-type]
        host.register(flow)
        workflow_id = await host.start_workflow("long-wait")
        await until_waiting_for_event(host, workflow_id)
        before = persistence.whole_reads
        await host.publish_event("go", "k", data={"n": 1})
        with anyio.fail_after(10):
            await resumed.wait()
        assert persistence.whole_reads == before, "the delivery read finished pointers"
        release.set()
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.count == 100
    waited = [p for p in instance.pointers if p.event_name == "go"]
    assert len(waited) == 1
    assert waited[0].event_published
    assert waited[0].event_data == {"n": 1}
    assert sum(1 for p in instance.pointers if p.step_name == "bump") == steps
