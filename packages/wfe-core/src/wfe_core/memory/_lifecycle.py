"""In-memory lifecycle publisher: fans events out to the subscribers of this process."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Self

import anyio
from anyio.lowlevel import checkpoint

from wfe_core.providers._lifecycle import LifecyclePublisher

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from wfe_core.models import LifecycleEvent

__all__ = ["LifecycleSubscription", "MemoryLifecycle"]

# Named, not __name__: the logger name is what users configure, and the module may move.
logger = logging.getLogger("wfe_core.memory.lifecycle")


class LifecycleSubscription:
    """The async iterator :meth:`MemoryLifecycle.subscribe` returns.

    It is registered when created, so it sees every event published after ``subscribe()``
    returned, even before iteration starts. Close it (``await sub.aclose()`` or ``async with``)
    to unsubscribe; one that is dropped unclosed is unsubscribed when garbage collected. It
    ends when the publisher closes.
    """

    def __init__(
        self, owner: MemoryLifecycle, receive: MemoryObjectReceiveStream[LifecycleEvent]
    ) -> None:
        self._owner = owner
        self._receive = receive

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LifecycleEvent:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._receive.close()
        await checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Closing here (not leaving it to the stream) avoids anyio's "unclosed stream"
        # ResourceWarning for subscribers that simply stop iterating.
        receive = getattr(self, "_receive", None)
        if receive is not None:
            receive.close()


class MemoryLifecycle(LifecyclePublisher):
    """Broadcasts lifecycle events to every current subscriber of this process.

    Each subscriber has a bounded buffer of ``buffer_size`` events; when it is full, events for
    that subscriber are dropped (and counted in :attr:`dropped`), so publishing never blocks.
    """

    capabilities = frozenset()

    def __init__(self, buffer_size: int = 1000) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.buffer_size = buffer_size
        #: How many deliveries were dropped because a subscriber's buffer was full.
        self.dropped = 0
        self._senders: list[MemoryObjectSendStream[LifecycleEvent]] = []

    async def publish(self, event: LifecycleEvent) -> None:
        """Hand ``event`` to every current subscriber without waiting for any of them.

        It does not yield to other tasks: the engine publishes after every step, and a trip
        through the event loop each time would cost more than the step."""
        if not self._senders:
            return
        alive: list[MemoryObjectSendStream[LifecycleEvent]] = []
        for sender in self._senders:
            try:
                sender.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped += 1
                logger.debug("lifecycle subscriber is full; dropped %s", event.type)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                # The subscriber went away: forget it.
                sender.close()
                continue
            alive.append(sender)
        self._senders = alive

    def subscribe(self) -> LifecycleSubscription:
        """Events published from now on, until the subscription is closed or the publisher
        closes."""
        send, receive = anyio.create_memory_object_stream["LifecycleEvent"](self.buffer_size)
        self._senders.append(send)
        return LifecycleSubscription(self, receive)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._senders)

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently registered (closed ones are noticed at the next publish)."""
        return len(self._senders)

    async def close(self) -> None:
        """End every subscription (their iteration stops)."""
        senders, self._senders = self._senders, []
        for sender in senders:
            sender.close()
        await checkpoint()
