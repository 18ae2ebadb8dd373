"""Valkey lifecycle publisher: lifecycle events to every host over pub/sub, optionally also a
capped stream for consumers that need to replay what they missed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Self

import anyio
from valkey import exceptions as valkey_errors

from wfe_core.errors import LifecycleGapError, ProviderError
from wfe_core.models import LifecycleEvent
from wfe_core.providers import LifecyclePublisher
from wfe_core.providers import capabilities as cap
from wfe_core.serialization import from_primitive, to_primitive
from wfe_valkey._connection import RETRIED, Connection, provider_error
from wfe_valkey.options import ValkeyOptions, parse_url

if TYPE_CHECKING:
    from types import TracebackType

    from valkey.asyncio.client import PubSub

__all__ = ["ValkeyLifecycle", "ValkeySubscription"]

logger = logging.getLogger(__name__)


def _encode(event: LifecycleEvent) -> str:
    return json.dumps(to_primitive(event), separators=(",", ":"))


def _decode(data: bytes | str) -> LifecycleEvent:
    return from_primitive(json.loads(data), LifecycleEvent)


def _decode_batch(data: bytes | str) -> list[LifecycleEvent]:
    """The events of one pub/sub message: a JSON array of events."""
    return [from_primitive(item, LifecycleEvent) for item in json.loads(data)]


class ValkeySubscription:
    """The async iterator :meth:`ValkeyLifecycle.subscribe` returns: one pub/sub connection.

    It starts subscribing when created; events published after that by its own publisher
    (which waits for the subscription to be active first) reach it, and so do other hosts'
    events once the server confirmed the subscription. When the connection is lost (the
    server restarted, the network failed) events published meanwhile are lost too, so the
    subscription does not quietly reconnect: it raises
    :class:`~wfe_core.errors.LifecycleGapError` and ends. Subscribe again, and re-check what
    you were waiting for. It ends when closed (``aclose()``) or when the publisher closes.
    """

    def __init__(self, owner: ValkeyLifecycle) -> None:
        self._owner = owner
        self._pubsub: PubSub | None = None
        self._closed = False
        #: Events of a message not handed out yet (one message carries several).
        self._received: collections.deque[LifecycleEvent] = collections.deque()
        self._connecting: asyncio.Task[PubSub] | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop yet: subscribe when iteration starts
            return
        self._connecting = asyncio.ensure_future(owner.open_pubsub())
        self._connecting.add_done_callback(_retrieve)

    @property
    def connecting(self) -> asyncio.Task[PubSub] | None:
        """The subscribing under way (for the publisher, which waits for it)."""
        task = self._connecting
        return task if task is not None and not task.done() else None

    async def wait_active(self) -> None:
        """Return once the server confirmed the subscription: every event published from
        then on, by any host, reaches it (the host's finish watcher waits for this before it
        stops re-reading persistence). Raises ``ProviderError`` when subscribing failed."""
        if self._pubsub is not None or self._closed:
            return
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._owner.open_pubsub())
        self._pubsub = await connecting

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LifecycleEvent:
        owner = self._owner
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._received:
                return self._received.popleft()
            try:
                await self.wait_active()
                if self._pubsub is None:  # closed meanwhile
                    raise StopAsyncIteration
                message = await self._pubsub.get_message(timeout=None)
            except RETRIED as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                await self.aclose()
                error = LifecycleGapError(
                    f"the lifecycle subscription on {owner.target.display} lost its connection"
                    f" ({exc}); events published meanwhile are lost: subscribe again"
                )
                raise error from exc
            except valkey_errors.ValkeyError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                await self.aclose()
                raise provider_error(owner.target, "reading lifecycle events", exc) from exc
            except ProviderError:
                # Subscribing failed for good (retries exhausted).
                await self.aclose()
                raise
            if message is None or message.get("type") != "message":
                continue
            try:
                self._received.extend(_decode_batch(message["data"]))
            except (ValueError, TypeError, KeyError):
                logger.warning("ignoring a lifecycle message that is not events", exc_info=True)

    async def aclose(self) -> None:
        """Stop receiving events (unsubscribes and gives the connection back)."""
        self._closed = True
        self._owner.forget(self)
        pubsub, self._pubsub = self._pubsub, None
        connecting, self._connecting = self._connecting, None
        if pubsub is None and connecting is not None:
            if connecting.done():
                if not connecting.cancelled() and connecting.exception() is None:
                    pubsub = connecting.result()
            else:
                connecting.cancel()
        if pubsub is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except valkey_errors.ValkeyError:  # pragma: no cover - a dead connection
                    logger.debug("closing a lifecycle subscription failed", exc_info=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A subscription nobody iterates must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()


#: Events one pub/sub message carries at most.
BATCH_LIMIT = 500
#: Events waiting to be sent at most: while the server is unreachable, older ones are dropped
#: (counted in ``ValkeyLifecycle.dropped``) instead of growing memory for ever.
OUTBOX_LIMIT = 10_000


class ValkeyLifecycle(LifecyclePublisher):
    """Publishes lifecycle events on the channel ``<prefix>:lifecycle`` of a Valkey (or Redis)
    server, so every host subscribed there sees them (``host.lifecycle_events()``,
    ``wait_for_workflow`` across hosts).

    :meth:`publish` never waits for the server: events go to an outbox that one task sends
    in order, as many as have accumulated in one message (a JSON array), so a pass that
    publishes a dozen events costs a dozen JSON encodings, not a dozen round trips.

    Pub/sub delivers at most once: an event published while a subscriber is disconnected is
    lost for it (measured: one published right after a server restart never arrived), and the
    subscription then raises :class:`~wfe_core.errors.LifecycleGapError` instead of hiding the
    gap; the host's finish watcher subscribes again and its waiters read persistence again.
    With ``lifecycle_stream_length`` set, every event also goes to the capped stream
    ``<prefix>:lifecycle:stream`` that :meth:`history` reads, for consumers that need to
    replay (lost too when a server without persistence restarts).
    """

    capabilities = frozenset({cap.DISTRIBUTED, cap.ASYNCIO_ONLY})

    def __init__(self, url: str | None = None, options: ValkeyOptions | None = None) -> None:
        self.target = parse_url(url, options)
        prefix = self.target.options.key_prefix
        #: The pub/sub channel events are published on.
        self.channel = f"{prefix}:lifecycle"
        #: The capped stream events also go to (when ``lifecycle_stream_length`` is set).
        self.stream = f"{prefix}:lifecycle:stream"
        #: Events dropped unsent: the outbox was full (the server unreachable for long) or
        #: sending failed after every retry.
        self.dropped = 0
        self._connection: Connection | None = None
        self._subscriptions: set[ValkeySubscription] = set()
        self._outbox: list[str] = []
        #: Events put in the outbox so far, and those sent (or dropped) so far.
        self._queued = 0
        self._handled = 0
        self._drained: list[tuple[int, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise ProviderError("the valkey lifecycle publisher is not open (use `async with`)")
        return self._connection

    async def open(self) -> None:
        """Connect, check the server answers, and start the sending task."""
        if self._connection is not None:
            return
        connection = Connection(self.target)
        try:
            await connection.check()
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._wake = asyncio.Event()
        self._sender = asyncio.ensure_future(self._send_outbox())

    async def close(self) -> None:
        """Send what is in the outbox (for up to ``socket_timeout`` seconds), end every
        subscription and close the connections."""
        with anyio.CancelScope(shield=True):
            if self._sender is not None:
                with anyio.move_on_after(self.target.options.socket_timeout):
                    await self.drain()
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sender
                self._sender = None
            for subscription in list(self._subscriptions):
                await subscription.aclose()
            connection, self._connection = self._connection, None
            if connection is not None:
                await connection.close()

    async def publish(self, event: LifecycleEvent) -> None:
        """Hand ``event`` to the outbox, sent to every host's subscribers (and to the stream,
        when it is on) in publish order, without waiting for the server."""
        if self._wake is None:
            raise ProviderError("the valkey lifecycle publisher is not open (use `async with`)")
        pending = [t for s in self._subscriptions if (t := s.connecting) is not None]
        if pending:
            # "From then on": a subscription made before this publish hears it.
            await asyncio.wait(pending)
        self._outbox.append(_encode(event))
        self._queued += 1
        if len(self._outbox) > OUTBOX_LIMIT:
            del self._outbox[0]
            self.dropped += 1
            self._count_handled(1)
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every event published so far was sent (or dropped)."""
        if self._handled >= self._queued:
            return
        done = asyncio.get_running_loop().create_future()
        self._drained.append((self._queued, done))
        await done

    def _count_handled(self, count: int) -> None:
        self._handled += count
        waiting, self._drained = self._drained, []
        for target, done in waiting:
            if target <= self._handled:
                if not done.done():
                    done.set_result(None)
            else:
                self._drained.append((target, done))

    async def _send_outbox(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._outbox:
                batch = self._outbox[:BATCH_LIMIT]
                del self._outbox[:BATCH_LIMIT]
                try:
                    await self._send(batch)
                except Exception as exc:
                    # At most once: a batch that could not be sent after every retry is lost.
                    self.dropped += len(batch)
                    logger.warning("%d lifecycle events lost: %s", len(batch), exc)
                self._count_handled(len(batch))

    async def _send(self, batch: list[str]) -> None:
        client = self.connection.client
        message = "[" + ",".join(batch) + "]"
        length = self.target.options.lifecycle_stream_length

        async def send() -> Any:
            if not length:
                return await client.publish(self.channel, message)
            async with client.pipeline(transaction=False) as pipe:
                pipe.publish(self.channel, message)
                for data in batch:
                    pipe.xadd(self.stream, {"event": data}, maxlen=length, approximate=True)
                return await pipe.execute()

        await self.connection.run("publishing lifecycle events", send)

    def subscribe(self) -> ValkeySubscription:
        """Events published from when iteration starts, until the subscription is closed, the
        publisher closes, or the connection is lost (``LifecycleGapError``)."""
        subscription = ValkeySubscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: ValkeySubscription) -> None:
        """Called by a subscription that closed."""
        self._subscriptions.discard(subscription)

    async def open_pubsub(self) -> PubSub:
        """A pub/sub connection subscribed to :attr:`channel` (for :class:`ValkeySubscription`)."""
        pubsub = self.connection.client.pubsub(ignore_subscribe_messages=True)
        try:
            await self.connection.run(
                "subscribing to lifecycle events", lambda: pubsub.subscribe(self.channel)
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        return pubsub

    async def history(
        self, *, after: str = "0-0", count: int = 100
    ) -> list[tuple[str, LifecycleEvent]]:
        """Up to ``count`` events of the capped stream published after the entry id
        ``after`` (``"0-0"``: from the oldest kept), oldest first, as ``(entry id, event)``.
        Pass the last id you got to read on. Empty when ``lifecycle_stream_length`` is 0."""
        await self.drain()  # what this publisher published so far is in
        client = self.connection.client

        async def read() -> Any:
            return await client.xrange(self.stream, min=f"({after}", max="+", count=count)

        entries = await self.connection.run("reading the lifecycle stream", read)
        result: list[tuple[str, LifecycleEvent]] = []
        for entry_id, fields in entries:
            ident = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            result.append((ident, _decode(fields[b"event"])))
        return result
