"""SQLite queue specifics: prefetching (several items claimed per write) and what it keeps
of the queue contract."""

from __future__ import annotations

import pytest

from wfe_core.providers import QueueName
from wfe_sqlite import SqliteOptions, SqliteQueue

W = QueueName.WORKFLOW
LONG = 300.0


async def _fill(queue: SqliteQueue, count: int) -> list[str]:
    items = [f"item-{index}" for index in range(count)]
    for item in items:
        await queue.enqueue(W, item)
    return items


@pytest.mark.anyio
async def test_one_claim_prefetches_for_the_next_dequeues(db_url: str) -> None:
    async with (
        SqliteQueue(db_url, SqliteOptions(prefetch=4)) as queue,
        SqliteQueue(db_url, SqliteOptions(prefetch=1), share_connections=False) as other,
    ):
        items = await _fill(queue, 6)
        first = await queue.dequeue(W, visibility_timeout=LONG)
        assert first is not None
        assert first.item_id == items[0]
        # Three more are claimed for this provider, yet still waiting as far as its size goes;
        # another process sees them in flight and gets the items after them.
        assert await queue.size(W) == 5
        assert await other.size(W) == 2
        taken = await other.dequeue(W, visibility_timeout=LONG)
        assert taken is not None
        assert taken.item_id == items[4]
        rest = [await queue.dequeue(W, visibility_timeout=LONG) for _ in range(4)]
        assert [m.item_id for m in rest if m is not None] == [*items[1:4], items[5]]
        assert len({m.receipt for m in rest if m is not None} | {first.receipt}) == 5
        assert all(m is not None and m.attempt == 1 for m in rest)


@pytest.mark.anyio
async def test_enqueue_and_requeue_of_a_prefetched_id(db_url: str) -> None:
    async with SqliteQueue(db_url, SqliteOptions(prefetch=4)) as queue:
        a, b, c = await _fill(queue, 3)
        first = await queue.dequeue(W, visibility_timeout=LONG)
        assert first is not None
        assert first.item_id == a
        # b and c are prefetched: still waiting, so enqueueing them again is a no-op.
        await queue.enqueue(W, b)
        assert await queue.size(W) == 2
        # a is in flight: enqueued again, it waits as a new item, behind b and c.
        await queue.enqueue(W, a)
        assert await queue.size(W) == 3
        assert [(await queue.dequeue(W, visibility_timeout=LONG)).item_id for _ in "bc"] == [b, c]  # type: ignore[union-attr]
        # The next claim prefetches nothing more; a's new copy is handed out.
        again = await queue.dequeue(W, visibility_timeout=LONG)
        assert again is not None
        assert (again.item_id, again.attempt) == (a, 1)


@pytest.mark.anyio
async def test_requeue_while_a_copy_is_prefetched_keeps_one_copy(db_url: str) -> None:
    async with SqliteQueue(db_url, SqliteOptions(prefetch=4)) as queue:
        (a,) = await _fill(queue, 1)
        handed = await queue.dequeue(W, visibility_timeout=LONG)
        assert handed is not None
        await queue.enqueue(W, "c")
        await queue.enqueue(W, a)  # a waiting copy while a is in flight
        c = await queue.dequeue(W, visibility_timeout=LONG)  # claims c and prefetches a
        assert c is not None
        assert c.item_id == "c"
        await queue.requeue(handed)  # a is waiting already (prefetched): one copy is enough
        assert await queue.size(W) == 1
        copy = await queue.dequeue(W, visibility_timeout=LONG)
        assert copy is not None
        assert copy.item_id == a
        await queue.ack(c)
        await queue.ack(copy)
        assert await queue.dequeue(W) is None
        assert await queue.size(W) == 0


@pytest.mark.anyio
async def test_closing_gives_prefetched_items_back_in_place(db_url: str) -> None:
    async with SqliteQueue(db_url, SqliteOptions(prefetch=8)) as queue:
        items = await _fill(queue, 5)
        first = await queue.dequeue(W, visibility_timeout=LONG)
        assert first is not None
    async with SqliteQueue(db_url) as queue:
        assert await queue.size(W) == 4
        again = [await queue.dequeue(W, visibility_timeout=LONG) for _ in range(4)]
        assert [(m.item_id, m.attempt) for m in again if m is not None] == [
            (item, 1) for item in items[1:]
        ]


@pytest.mark.anyio
async def test_short_visibility_timeouts_claim_one_item(db_url: str) -> None:
    async with (
        SqliteQueue(db_url) as queue,
        SqliteQueue(db_url, share_connections=False) as other,
    ):
        items = await _fill(queue, 3)
        first = await queue.dequeue(W, visibility_timeout=2.0)
        assert first is not None
        taken = await other.dequeue(W, visibility_timeout=2.0)
        assert taken is not None
        assert (first.item_id, taken.item_id) == (items[0], items[1])


@pytest.mark.anyio
async def test_prefetched_items_too_old_for_the_caller_go_back(db_url: str) -> None:
    async with SqliteQueue(db_url, SqliteOptions(prefetch=4)) as queue:
        items = await _fill(queue, 3)
        # Claimed with a 12 s visibility timeout, then asked for with 300 s: less than half
        # of it is left, so the prefetched items go back and are claimed afresh.
        first = await queue.dequeue(W, visibility_timeout=12.0)
        assert first is not None
        second = await queue.dequeue(W, visibility_timeout=LONG)
        assert second is not None
        assert (second.item_id, second.attempt) == (items[1], 1)
        third = await queue.dequeue(W, visibility_timeout=LONG)
        assert third is not None
        assert third.item_id == items[2]
