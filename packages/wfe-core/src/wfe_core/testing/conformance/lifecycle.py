"""The conformance suite of :class:`~wfe_core.providers.LifecyclePublisher`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, ClassVar

import anyio
import pytest

from wfe_core.models import LifecycleEvent, LifecycleEventType

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_core.providers import LifecyclePublisher

__all__ = ["LifecycleSuite"]

#: How long a test waits for expected events before failing.
RECEIVE_TIMEOUT = 10.0


async def _close(subscription: AsyncIterator[LifecycleEvent]) -> None:
    aclose = getattr(subscription, "aclose", None)
    if aclose is not None:
        await aclose()


class LifecycleSuite:
    """Contract tests every :class:`~wfe_core.providers.LifecyclePublisher` must pass.

    Subclass it in a test module, set ``__test__ = True`` and supply an async ``lifecycle``
    fixture yielding an entered provider (fresh per test)::

        class TestMyLifecycle(LifecycleSuite):
            __test__ = True
            settle_time = 0.2  # a remote subscription needs a moment to become active

            @pytest.fixture
            async def lifecycle(self):
                async with MyLifecycle(...) as provider:
                    yield provider

    Tests only look at events of their own (by workflow id), so a shared channel is fine.
    """

    __test__ = False

    #: Seconds between a consumer starting to iterate a subscription and the first publish,
    #: for providers whose subscription becomes active asynchronously. In-process: 0.
    settle_time: ClassVar[float] = 0.0

    def _events(self, count: int) -> list[LifecycleEvent]:
        workflow_id = f"wfe-test-{uuid.uuid4().hex}"
        types = list(LifecycleEventType)
        return [
            LifecycleEvent(
                type=types[index % len(types)],
                workflow_id=workflow_id,
                definition_id="flow",
                version=1,
                step_id=index,
                step_name=f"step {index}",
                message="ünïcode",
            )
            for index in range(count)
        ]

    async def _receive(
        self,
        subscription: AsyncIterator[LifecycleEvent],
        workflow_id: str,
        count: int,
        into: list[LifecycleEvent],
    ) -> None:
        with anyio.fail_after(RECEIVE_TIMEOUT):
            async for event in subscription:
                if event.workflow_id == workflow_id:
                    into.append(event)
                    if len(into) == count:
                        return

    async def _publish_to(
        self,
        lifecycle: LifecyclePublisher,
        subscriptions: list[AsyncIterator[LifecycleEvent]],
        events: list[LifecycleEvent],
    ) -> list[list[LifecycleEvent]]:
        received: list[list[LifecycleEvent]] = [[] for _ in subscriptions]
        async with anyio.create_task_group() as tg:
            for subscription, into in zip(subscriptions, received, strict=True):
                tg.start_soon(self._receive, subscription, events[0].workflow_id, len(events), into)
            await anyio.sleep(self.settle_time)
            for event in events:
                await lifecycle.publish(event)
        return received

    @pytest.mark.anyio
    async def test_subscriber_receives_events_in_order(self, lifecycle: LifecyclePublisher) -> None:
        events = self._events(5)
        subscription = lifecycle.subscribe()
        try:
            (received,) = await self._publish_to(lifecycle, [subscription], events)
        finally:
            await _close(subscription)
        assert received == events

    @pytest.mark.anyio
    async def test_every_subscriber_receives_every_event(
        self, lifecycle: LifecyclePublisher
    ) -> None:
        events = self._events(3)
        subscriptions = [lifecycle.subscribe() for _ in range(3)]
        try:
            received = await self._publish_to(lifecycle, subscriptions, events)
        finally:
            for subscription in subscriptions:
                await _close(subscription)
        assert received == [events, events, events]

    @pytest.mark.anyio
    async def test_late_subscriber_misses_earlier_events(
        self, lifecycle: LifecyclePublisher
    ) -> None:
        early, *later = self._events(3)
        await lifecycle.publish(early)
        subscription = lifecycle.subscribe()
        try:
            (received,) = await self._publish_to(lifecycle, [subscription], later)
        finally:
            await _close(subscription)
        assert received == later

    @pytest.mark.anyio
    async def test_publish_without_subscribers(self, lifecycle: LifecyclePublisher) -> None:
        with anyio.fail_after(RECEIVE_TIMEOUT):
            for event in self._events(10):
                await lifecycle.publish(event)

    @pytest.mark.anyio
    async def test_slow_subscriber_never_blocks_publish(
        self, lifecycle: LifecyclePublisher
    ) -> None:
        events = self._events(3000)
        idle = lifecycle.subscribe()  # never read from
        try:
            await anyio.sleep(self.settle_time)
            with anyio.fail_after(30):
                for event in events:
                    await lifecycle.publish(event)
        finally:
            await _close(idle)
        # The publisher still works for others.
        fresh = self._events(2)
        subscription = lifecycle.subscribe()
        try:
            (received,) = await self._publish_to(lifecycle, [subscription], fresh)
        finally:
            await _close(subscription)
        assert received == fresh

    @pytest.mark.anyio
    async def test_subscriber_that_stopped_does_not_disturb_others(
        self, lifecycle: LifecyclePublisher
    ) -> None:
        first_batch = self._events(2)
        quitter = lifecycle.subscribe()
        stayer = lifecycle.subscribe()
        try:
            received = await self._publish_to(lifecycle, [quitter, stayer], first_batch)
            assert received == [first_batch, first_batch]
            await _close(quitter)
            second_batch = self._events(2)
            (again,) = await self._publish_to(lifecycle, [stayer], second_batch)
            assert again == second_batch
        finally:
            await _close(stayer)

    @pytest.mark.anyio
    async def test_events_carry_every_field(self, lifecycle: LifecyclePublisher) -> None:
        event = LifecycleEvent(
            type=LifecycleEventType.WORKFLOW_ERROR,
            workflow_id=f"wfe-test-{uuid.uuid4().hex}",
            definition_id="flow",
            version=3,
            reference="ref-1",
            step_id=2,
            step_name="Charge",
            pointer_id=uuid.uuid4().hex,
            message="boom",
        )
        subscription = lifecycle.subscribe()
        try:
            (received,) = await self._publish_to(lifecycle, [subscription], [event])
        finally:
            await _close(subscription)
        (got,) = received
        assert got == event
        assert isinstance(got.type, LifecycleEventType)
