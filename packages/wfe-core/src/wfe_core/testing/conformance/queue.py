"""The conformance suite of :class:`~wfe_core.providers.QueueProvider`."""

from __future__ import annotations

import functools
import uuid

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from wfe_core.providers import QueueMessage, QueueName, QueueProvider
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance._support import MACHINE_SETTINGS, call, require

__all__ = ["QueueSuite", "queue_state_machine"]

W = QueueName.WORKFLOW
E = QueueName.EVENT

#: Long enough that no delivery lapses during a test unless the test wants it to.
LONG_VISIBILITY = 300.0


def _ids(count: int) -> list[str]:
    prefix = uuid.uuid4().hex[:8]
    return [f"{prefix}-{index:03d}" for index in range(count)]


async def _take(queue: QueueProvider, name: QueueName = W, wait: float = 0.0) -> QueueMessage:
    message = await queue.dequeue(name, timeout=wait, visibility_timeout=LONG_VISIBILITY)
    assert message is not None, f"{name} should have had an item"
    return message


class QueueSuite:
    """Contract tests every :class:`~wfe_core.providers.QueueProvider` must pass.

    Subclass it in a test module, set ``__test__ = True`` and supply an async ``queue`` fixture
    that yields an entered provider whose queues are empty (fresh per test)::

        class TestMyQueue(QueueSuite):
            __test__ = True

            @pytest.fixture
            async def queue(self):
                async with MyQueue(...) as provider:
                    yield provider
    """

    __test__ = False

    @pytest.fixture
    def other_queue(self) -> QueueProvider | None:
        """A second entered provider on the same backend as ``queue`` (another process's view).

        Providers with the ``distributed`` capability override this fixture so the suite can
        check that queues are shared between provider instances; ``None`` skips those tests.
        """
        return None

    @pytest.mark.anyio
    async def test_message_fields(self, queue: QueueProvider) -> None:
        (item,) = _ids(1)
        await queue.enqueue(W, item)
        message = await _take(queue)
        assert message.queue == W
        assert message.item_id == item
        assert message.receipt
        assert message.attempt == 1
        assert message.delivered_at is None or message.delivered_at.tzinfo is not None

    @pytest.mark.anyio
    async def test_fifo(self, queue: QueueProvider) -> None:
        items = _ids(6)
        for item in items:
            await queue.enqueue(W, item)
        assert await queue.size(W) == len(items)
        delivered = [(await _take(queue)).item_id for _ in items]
        assert delivered == items

    @pytest.mark.anyio
    async def test_enqueue_of_a_waiting_id_is_a_no_op(self, queue: QueueProvider) -> None:
        x, y = _ids(2)
        for item in (x, x, y, x):
            await queue.enqueue(W, item)
        assert await queue.size(W) == 2
        assert (await _take(queue)).item_id == x
        assert (await _take(queue)).item_id == y
        assert await queue.dequeue(W) is None

    @pytest.mark.anyio
    async def test_enqueue_while_in_flight_queues_again(self, queue: QueueProvider) -> None:
        (x,) = _ids(1)
        await queue.enqueue(W, x)
        first = await _take(queue)
        assert await queue.size(W) == 0
        await queue.enqueue(W, x)
        await queue.enqueue(W, x)  # waiting again: de-duplicated
        assert await queue.size(W) == 1
        await queue.ack(first)
        second = await _take(queue)
        assert second.item_id == x
        assert second.receipt != first.receipt
        await queue.ack(second)
        assert await queue.size(W) == 0
        assert await queue.dequeue(W) is None

    @pytest.mark.anyio
    async def test_ack_removes_for_good_and_is_idempotent(self, queue: QueueProvider) -> None:
        (x,) = _ids(1)
        await queue.enqueue(W, x)
        message = await _take(queue)
        await queue.ack(message)
        await queue.ack(message)
        assert await queue.size(W) == 0
        assert await queue.dequeue(W, timeout=0.3) is None

    @pytest.mark.anyio
    async def test_requeue_puts_the_item_back_at_the_tail(self, queue: QueueProvider) -> None:
        a, b = _ids(2)
        await queue.enqueue(W, a)
        await queue.enqueue(W, b)
        first = await _take(queue)
        assert first.item_id == a
        await queue.requeue(first)
        assert await queue.size(W) == 2
        assert (await _take(queue)).item_id == b
        again = await _take(queue)
        assert again.item_id == a
        assert again.receipt != first.receipt
        assert again.attempt == 2

    @pytest.mark.anyio
    async def test_requeue_with_delay(self, queue: QueueProvider) -> None:
        a, b, c = _ids(3)
        await queue.enqueue(W, a)
        await queue.enqueue(W, b)
        message = await _take(queue)
        started = anyio.current_time()
        await queue.requeue(message, delay=0.5)
        await queue.enqueue(W, c)
        # The delayed item does not hold up those behind it.
        assert (await _take(queue)).item_id == b
        assert (await _take(queue)).item_id == c
        assert await queue.dequeue(W) is None
        later = await _take(queue, wait=5.0)
        assert later.item_id == a
        assert anyio.current_time() - started >= 0.4

    @pytest.mark.anyio
    async def test_enqueue_makes_a_delayed_item_visible_now(self, queue: QueueProvider) -> None:
        a, b = _ids(2)
        await queue.enqueue(W, a)
        await queue.enqueue(W, b)
        message = await _take(queue)
        await queue.requeue(message, delay=30.0)
        assert (await _take(queue)).item_id == b
        assert await queue.dequeue(W) is None
        # New work for the delayed id: one waiting copy, visible now, not after the delay.
        await queue.enqueue(W, a)
        assert await queue.size(W) == 1
        again = await _take(queue, wait=5.0)
        assert again.item_id == a
        assert again.receipt != message.receipt
        await queue.ack(again)
        assert await queue.size(W) == 0
        assert await queue.dequeue(W) is None

    @pytest.mark.anyio
    async def test_enqueue_wakes_a_consumer_waiting_for_a_delayed_item(
        self, queue: QueueProvider
    ) -> None:
        (x,) = _ids(1)
        await queue.enqueue(W, x)
        await queue.requeue(await _take(queue), delay=30.0)
        received: list[QueueMessage | None] = []

        async def consume() -> None:
            received.append(
                await queue.dequeue(W, timeout=10.0, visibility_timeout=LONG_VISIBILITY)
            )

        started = anyio.current_time()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.2)
                await queue.enqueue(W, x)
        assert [m.item_id if m else None for m in received] == [x]
        assert anyio.current_time() - started < 5.0

    @pytest.mark.anyio
    async def test_dequeue_timeout_returns_none(self, queue: QueueProvider) -> None:
        assert await queue.dequeue(W) is None
        started = anyio.current_time()
        assert await queue.dequeue(W, timeout=0.3) is None
        assert anyio.current_time() - started >= 0.2

    @pytest.mark.anyio
    async def test_blocking_dequeue_wakes_on_enqueue(self, queue: QueueProvider) -> None:
        await _assert_blocked_dequeue_wakes(queue, enqueuer=queue)

    @pytest.mark.anyio
    async def test_waiting_consumers_each_get_one_item(self, queue: QueueProvider) -> None:
        items = _ids(4)
        received: list[str] = []

        async def consume() -> None:
            message = await queue.dequeue(W, timeout=10.0, visibility_timeout=LONG_VISIBILITY)
            assert message is not None
            received.append(message.item_id)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for _ in items:
                    tg.start_soon(consume)
                await anyio.sleep(0.2)
                for item in items:
                    await queue.enqueue(W, item)
        assert sorted(received) == sorted(items)

    @pytest.mark.anyio
    async def test_concurrent_consumers_get_every_item_exactly_once(
        self, queue: QueueProvider
    ) -> None:
        items = _ids(40)
        for item in items:
            await queue.enqueue(W, item)
        delivered: list[str] = []

        async def consume() -> None:
            while True:
                message = await queue.dequeue(W, timeout=0.5, visibility_timeout=LONG_VISIBILITY)
                if message is None:
                    return
                delivered.append(message.item_id)
                await anyio.lowlevel.checkpoint()
                await queue.ack(message)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(consume)
        assert len(delivered) == len(set(delivered)), "an item was handed out twice"
        assert sorted(delivered) == sorted(items)
        assert await queue.size(W) == 0

    @pytest.mark.anyio
    async def test_redelivery_after_visibility_timeout(self, queue: QueueProvider) -> None:
        require(queue, cap.QUEUE_REDELIVERY)
        (x,) = _ids(1)
        await queue.enqueue(W, x)
        first = await queue.dequeue(W, visibility_timeout=0.3)
        assert first is not None
        # Invisible while the delivery lasts.
        assert await queue.dequeue(W) is None
        second = await queue.dequeue(W, timeout=5.0, visibility_timeout=LONG_VISIBILITY)
        assert second is not None
        assert second.item_id == x
        assert second.receipt != first.receipt
        assert second.attempt == first.attempt + 1
        await queue.ack(second)
        # The lapsed receipt changes nothing.
        await queue.ack(first)
        await queue.requeue(first)
        assert await queue.size(W) == 0
        assert await queue.dequeue(W, timeout=0.5) is None

    @pytest.mark.anyio
    async def test_queues_are_independent(self, queue: QueueProvider) -> None:
        x, y = _ids(2)
        await queue.enqueue(W, x)
        assert await queue.dequeue(E) is None
        await queue.enqueue(E, x)
        await queue.enqueue(E, y)
        assert await queue.size(W) == 1
        assert await queue.size(E) == 2
        event = await _take(queue, E)
        assert event.queue == E
        assert event.item_id == x
        workflow = await _take(queue, W)
        assert workflow.item_id == x
        await queue.ack(event)
        assert await queue.size(E) == 1

    @pytest.mark.anyio
    async def test_queues_are_shared_between_providers(
        self, queue: QueueProvider, other_queue: QueueProvider | None
    ) -> None:
        require(queue, cap.DISTRIBUTED)
        if other_queue is None:
            pytest.skip("supply an `other_queue` fixture to check a distributed queue")
        items = _ids(30)
        for index, item in enumerate(items):
            await (queue, other_queue)[index % 2].enqueue(W, item)
        await other_queue.enqueue(W, items[0])  # waiting: a no-op from either side
        assert await queue.size(W) == len(items)
        assert await other_queue.size(W) == len(items)
        delivered: list[str] = []

        async def consume(provider: QueueProvider) -> None:
            while True:
                message = await provider.dequeue(W, timeout=0.5, visibility_timeout=LONG_VISIBILITY)
                if message is None:
                    return
                delivered.append(message.item_id)
                await provider.ack(message)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for index in range(6):
                    tg.start_soon(consume, (queue, other_queue)[index % 2])
        assert len(delivered) == len(set(delivered)), "an item was handed out twice"
        assert sorted(delivered) == sorted(items)

    @pytest.mark.anyio
    async def test_blocked_consumer_wakes_on_enqueue_by_another_provider(
        self, queue: QueueProvider, other_queue: QueueProvider | None
    ) -> None:
        require(queue, cap.DISTRIBUTED)
        if other_queue is None:
            pytest.skip("supply an `other_queue` fixture to check a distributed queue")
        await _assert_blocked_dequeue_wakes(queue, enqueuer=other_queue)

    @pytest.mark.anyio
    async def test_matches_the_model(self, queue: QueueProvider) -> None:
        """Random sequences of enqueue/dequeue/ack/requeue agree with a simple model."""
        machine = queue_state_machine(queue)
        await anyio.to_thread.run_sync(
            functools.partial(run_state_machine_as_test, machine, settings=MACHINE_SETTINGS)
        )


def queue_state_machine(queue: QueueProvider) -> type[RuleBasedStateMachine]:
    """A state machine checking ``queue`` against a model of FIFO queues with de-duplication.

    Deliveries never lapse (their visibility timeout is long) and requeues have no delay. Run it
    in a worker thread of the event loop that owns ``queue`` (``anyio.to_thread.run_sync``).
    Each run leaves the queues empty.
    """
    names = (QueueName.WORKFLOW, QueueName.EVENT)

    class QueueMachine(RuleBasedStateMachine):
        messages = Bundle("messages")

        def __init__(self) -> None:
            super().__init__()
            self.prefix = uuid.uuid4().hex[:8] + "-"
            self.waiting: dict[QueueName, list[str]] = {name: [] for name in names}
            self.in_flight: dict[str, QueueMessage] = {}  # by receipt

        @rule(name=st.sampled_from(names), item=st.sampled_from("abcd"))
        def enqueue(self, name: QueueName, item: str) -> None:
            call(queue.enqueue, name, self.prefix + item)
            if self.prefix + item not in self.waiting[name]:
                self.waiting[name].append(self.prefix + item)

        @rule(target=messages, name=st.sampled_from(names))
        def dequeue(self, name: QueueName) -> QueueMessage | None:
            message: QueueMessage | None = call(
                queue.dequeue, name, visibility_timeout=LONG_VISIBILITY
            )
            if not self.waiting[name]:
                assert message is None, f"{name} should be empty, got {message}"
                return None
            expected = self.waiting[name].pop(0)
            assert message is not None, f"{name} should have handed out {expected}"
            assert message.item_id == expected
            assert message.queue == name
            assert message.attempt >= 1
            assert message.receipt not in self.in_flight
            self.in_flight[message.receipt] = message
            return message

        @rule(message=messages)
        def ack(self, message: QueueMessage | None) -> None:
            if message is not None:
                call(queue.ack, message)
                self.in_flight.pop(message.receipt, None)

        @rule(message=messages)
        def requeue(self, message: QueueMessage | None) -> None:
            if message is None:
                return
            call(queue.requeue, message)
            if self.in_flight.pop(message.receipt, None) is not None:
                waiting = self.waiting[message.queue]
                if message.item_id not in waiting:
                    waiting.append(message.item_id)

        @invariant()
        def sizes_agree(self) -> None:
            for name in names:
                assert call(queue.size, name) == len(self.waiting[name])

        def teardown(self) -> None:
            # Leave the queues empty for the next run.
            for message in self.in_flight.values():
                call(queue.ack, message)
            for name in names:
                while (leftover := call(queue.dequeue, name)) is not None:
                    call(queue.ack, leftover)

    return QueueMachine


async def _assert_blocked_dequeue_wakes(queue: QueueProvider, *, enqueuer: QueueProvider) -> None:
    """A consumer blocked in ``queue.dequeue`` gets the item ``enqueuer`` adds meanwhile."""
    (x,) = _ids(1)
    received: list[QueueMessage | None] = []

    async def consume() -> None:
        received.append(await queue.dequeue(W, timeout=10.0))

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.2)
            await enqueuer.enqueue(W, x)
    assert [m.item_id if m else None for m in received] == [x]
