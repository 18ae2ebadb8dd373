"""Behaviour of the in-memory providers beyond the shared contracts."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from wfe_core.memory import (
    MemoryLifecycle,
    MemoryLock,
    MemoryPersistence,
    MemoryQueue,
    MemorySearch,
)
from wfe_core.memory.plugin import register_providers
from wfe_core.models import LifecycleEvent, LifecycleEventType, WorkflowInstance
from wfe_core.plugins import ProviderKind
from wfe_core.providers import QueueName

pytestmark = pytest.mark.anyio


def _event(workflow_id: str = "w") -> LifecycleEvent:
    return LifecycleEvent(LifecycleEventType.WORKFLOW_STARTED, workflow_id, "flow", 1)


def test_providers_are_built_without_an_event_loop() -> None:
    # Factories run synchronously, outside any event loop.
    for spec in register_providers():
        provider = spec.factory(None, None)
        assert type(provider).capabilities == spec.capabilities, spec.kind


def test_plugin_offers_every_kind() -> None:
    assert {spec.kind for spec in register_providers()} == set(ProviderKind)


async def test_lifecycle_counts_dropped_events_for_a_full_subscriber() -> None:
    async with MemoryLifecycle(buffer_size=2) as lifecycle:
        subscription = lifecycle.subscribe()
        for index in range(5):
            await lifecycle.publish(_event(str(index)))
        assert lifecycle.dropped == 3
        received = [await subscription.__anext__() for _ in range(2)]
        assert [event.workflow_id for event in received] == ["0", "1"]
        await subscription.aclose()


async def test_lifecycle_forgets_closed_and_collected_subscribers() -> None:
    async with MemoryLifecycle() as lifecycle:
        closed = lifecycle.subscribe()
        dropped = lifecycle.subscribe()
        kept = lifecycle.subscribe()
        await closed.aclose()
        del dropped
        gc.collect()
        await lifecycle.publish(_event())
        assert lifecycle.subscriber_count == 1
        assert (await kept.__anext__()).workflow_id == "w"
        await kept.aclose()


async def test_lifecycle_close_ends_iteration() -> None:
    lifecycle = MemoryLifecycle()
    received: list[LifecycleEvent] = []
    async with lifecycle:
        subscription = lifecycle.subscribe()

        async def consume() -> None:
            async for event in subscription:
                received.append(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await lifecycle.publish(_event())
            await anyio.sleep(0.05)
            await lifecycle.close()
    assert len(received) == 1
    await subscription.aclose()


async def test_lifecycle_subscription_as_context_manager() -> None:
    async with MemoryLifecycle() as lifecycle:
        async with lifecycle.subscribe() as subscription:
            await lifecycle.publish(_event("ctx"))
            assert (await subscription.__anext__()).workflow_id == "ctx"
        await lifecycle.publish(_event())
        assert lifecycle.subscriber_count == 0


def test_lifecycle_rejects_an_empty_buffer() -> None:
    with pytest.raises(ValueError, match="buffer_size"):
        MemoryLifecycle(buffer_size=0)


async def test_lock_refuses_a_non_positive_ttl() -> None:
    async with MemoryLock() as lock:
        with pytest.raises(ValueError, match="ttl"):
            await lock.acquire("k", owner="a", ttl=0)


async def test_lock_waiter_wakes_on_release_not_on_a_timer() -> None:
    async with MemoryLock() as lock:
        held = await lock.acquire("k", owner="a", ttl=60)
        assert held is not None
        got: list[float] = []

        async def wait_for_it() -> None:
            lease = await lock.acquire("k", owner="b", ttl=60, wait=30)
            assert lease is not None
            got.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_it)
            await anyio.sleep(0.1)
            released_at = anyio.current_time()
            await lock.release(held)
        # Woken by the release itself: well before the lease's 60 s expiry.
        assert got[0] - released_at < 10


async def test_queue_waits_for_a_delayed_item_without_an_enqueue() -> None:
    async with MemoryQueue() as queue:
        await queue.enqueue(QueueName.WORKFLOW, "x")
        message = await queue.dequeue(QueueName.WORKFLOW)
        assert message is not None
        await queue.requeue(message, delay=0.3)
        # Counted as waiting while delayed.
        assert await queue.size(QueueName.WORKFLOW) == 1
        again = await queue.dequeue(QueueName.WORKFLOW, timeout=5)
        assert again is not None
        assert again.attempt == 2


async def test_queue_redelivery_keeps_one_waiting_copy() -> None:
    async with MemoryQueue() as queue:
        await queue.enqueue(QueueName.WORKFLOW, "x")
        lapsing = await queue.dequeue(QueueName.WORKFLOW, visibility_timeout=0.2)
        assert lapsing is not None
        await queue.enqueue(QueueName.WORKFLOW, "x")  # waiting again during the pass
        await anyio.sleep(0.4)
        assert await queue.size(QueueName.WORKFLOW) == 1
        again = await queue.dequeue(QueueName.WORKFLOW)
        assert again is not None
        assert again.item_id == "x"
        assert await queue.dequeue(QueueName.WORKFLOW) is None


async def test_search_rejects_unknown_filters() -> None:
    async with MemorySearch() as search:
        with pytest.raises(ValueError, match="unknown search filters"):
            await search.search(filters={"colour": "red"})


async def test_search_ranks_reference_matches_above_data_matches() -> None:
    async with MemorySearch() as search:
        now = datetime.now(UTC)
        in_data = WorkflowInstance("flow", 1, data={"note": "otter"}, create_time=now)
        in_reference = WorkflowInstance(
            "flow", 1, reference="otter", create_time=now - timedelta(hours=1)
        )
        await search.index_workflow(in_data)
        await search.index_workflow(in_reference)
        page = await search.search("otter")
        assert [item.id for item in page.items] == [in_reference.id, in_data.id]


async def test_search_filters_accept_several_values() -> None:
    async with MemorySearch() as search:
        instances = [WorkflowInstance(name, 1) for name in ("a", "b", "c")]
        for instance in instances:
            await search.index_workflow(instance)
        page = await search.search(filters={"definition_id": ["a", "c"]})
        assert sorted(item.definition_id for item in page.items) == ["a", "c"]


async def test_persistence_reads_naive_times_as_utc() -> None:
    async with MemoryPersistence() as persistence:
        naive = datetime(2030, 1, 1, 12, 0)
        instance = WorkflowInstance("flow", 1, next_execution=naive)
        await persistence.create_workflow(instance)
        stored = await persistence.get_workflow(instance.id)
        assert stored.next_execution == naive.replace(tzinfo=UTC)
        runnable = await persistence.get_runnable_instances(datetime(2031, 1, 1, tzinfo=UTC))
        assert list(runnable) == [instance.id]


def _count_time_looks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the looks at the event loop's clock made through ``anyio.current_time``: the
    memory queue and lock look once per check of their state, so a waiting call that
    polled would look many times."""
    looks = [0]
    current_time = anyio.current_time

    def counting() -> float:
        looks[0] += 1
        return current_time()

    monkeypatch.setattr(anyio, "current_time", counting)
    return looks


async def test_queue_dequeue_sleeps_instead_of_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MemoryQueue() as queue:
        looks = _count_time_looks(monkeypatch)
        assert await queue.dequeue(QueueName.WORKFLOW, timeout=0.5) is None
    # The deadline, one look before sleeping and one at the deadline; polling would look
    # many times.
    assert looks[0] <= 3


async def test_lock_wait_sleeps_instead_of_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MemoryLock() as lock:
        assert await lock.acquire("k", owner="a", ttl=60) is not None
        looks = _count_time_looks(monkeypatch)
        assert await lock.acquire("k", owner="b", ttl=60, wait=0.5) is None
    assert looks[0] <= 3


def test_queue_and_lock_serve_one_event_loop_after_another() -> None:
    # Scripts call anyio.run repeatedly with one set of providers: nothing a waiter left
    # behind may be bound to an earlier loop.
    queue, lock = MemoryQueue(), MemoryLock()

    async def wait_on_both() -> None:
        assert await queue.dequeue(QueueName.WORKFLOW, timeout=0.05) is None
        await lock.acquire("k", owner="a", ttl=60)
        assert await lock.acquire("k", owner="b", ttl=60, wait=0.05) is None

    anyio.run(wait_on_both)
    anyio.run(wait_on_both)


async def test_lifecycle_has_subscribers_while_one_is_open() -> None:
    async with MemoryLifecycle() as lifecycle:
        assert not lifecycle.has_subscribers
        subscription = lifecycle.subscribe()
        assert lifecycle.has_subscribers
        await subscription.aclose()
        await lifecycle.publish(_event())  # notices the closed one
        assert not lifecycle.has_subscribers
