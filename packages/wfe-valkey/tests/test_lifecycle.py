"""The lifecycle conformance suite, the capped stream, and what a restart does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from wfe_core.errors import LifecycleGapError
from wfe_core.models import LifecycleEvent, LifecycleEventType
from wfe_core.testing.conformance import LifecycleSuite
from wfe_valkey.lifecycle import ValkeyLifecycle

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_valkey.options import ValkeyOptions
    from wfe_valkey.testing import ValkeyTestServer


class TestValkeyLifecycle(LifecycleSuite):
    __test__ = True
    settle_time = 0.2

    @pytest.fixture
    async def lifecycle(
        self, valkey_url: str, options: ValkeyOptions
    ) -> AsyncIterator[ValkeyLifecycle]:
        async with ValkeyLifecycle(valkey_url, options) as provider:
            yield provider


def _event(workflow_id: str, step: int = 0) -> LifecycleEvent:
    return LifecycleEvent(
        type=LifecycleEventType.STEP_COMPLETED,
        workflow_id=workflow_id,
        definition_id="flow",
        version=1,
        step_id=step,
    )


@pytest.mark.anyio
async def test_the_capped_stream_replays_events_in_order(
    valkey_url: str, options: ValkeyOptions
) -> None:
    options = attrs.evolve(options, lifecycle_stream_length=5)
    async with ValkeyLifecycle(valkey_url, options) as lifecycle:
        events = [_event("wf", step) for step in range(3)]
        for event in events:
            await lifecycle.publish(event)
        replayed = await lifecycle.history()
        assert [event for _, event in replayed] == events
        # Reading on from an entry id gives what came after it.
        later = await lifecycle.history(after=replayed[0][0])
        assert [event for _, event in later] == events[1:]


@pytest.mark.anyio
async def test_a_restart_ends_a_subscription_with_a_gap_error(
    restartable: ValkeyTestServer, options: ValkeyOptions
) -> None:
    async with ValkeyLifecycle(restartable.url, options) as lifecycle:
        subscription = lifecycle.subscribe()
        received: list[LifecycleEvent] = []
        arrived = anyio.Event()
        errors: list[BaseException] = []

        async def consume() -> None:
            try:
                async for event in subscription:
                    received.append(event)
                    arrived.set()
            except LifecycleGapError as exc:
                errors.append(exc)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.2)
                await lifecycle.publish(_event("before"))
                await arrived.wait()
                restartable.restart()
        (error,) = errors
        assert "subscribe again" in str(error)
        assert [e.workflow_id for e in received] == ["before"]
        # The publisher itself carries on, and a new subscription receives again.
        again = lifecycle.subscribe()
        try:
            got: list[LifecycleEvent] = []

            async def first() -> None:
                async for event in again:
                    got.append(event)
                    return

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(first)
                    await anyio.sleep(0.2)
                    await lifecycle.publish(_event("after"))
            assert [e.workflow_id for e in got] == ["after"]
        finally:
            await again.aclose()
