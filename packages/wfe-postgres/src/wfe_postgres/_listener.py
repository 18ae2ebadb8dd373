"""Wake-ups by ``LISTEN``/``NOTIFY``: one listening connection per process and database.

Internal. The queue and the lock send ``NOTIFY`` in the transaction that makes work available
(an enqueue, a requeue, a lock release); the listener wakes the waiters of that topic.
The connection lives outside the pool (a pooled connection would lose its ``LISTEN`` when it
is handed to someone else). When it drops (server restart, a backend killed, a half-open
socket found by TCP keepalives) it reconnects with a jittered back-off, listens again and wakes
every waiter, because notifications sent meanwhile are gone: each waiter then looks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final

import anyio
import psycopg
from psycopg import sql

from wfe_core.errors import ProviderError, WfeError
from wfe_postgres.base import PostgresProviderMixin

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable, Iterator

    #: Opens the listening connection (autocommit, with :data:`KEEPALIVES`).
    Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

__all__ = [
    "Listener",
    "ListeningProviderMixin",
    "Watch",
    "acquire_listener",
    "channel_for",
    "notify_sql",
    "release_listener",
]

logger = logging.getLogger("wfe_postgres.listener")

#: Keepalives find a half-open socket (the server's machine gone without closing it) in
#: about idle + interval * count seconds, at no cost to the server.
KEEPALIVES: Final[dict[str, Any]] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}
#: Reconnection back-off (seconds), jittered so hosts that lost a server together do not
#: all come back in the same instant.
RECONNECT_FIRST: Final = 0.1
RECONNECT_MAX: Final = 5.0
#: How long opening a provider waits for the listener's first connection; its waiters poll
#: until it is there.
LISTENER_READY_WAIT: Final = 5.0


def channel_for(schema: str) -> str:
    """The notification channel of the providers in ``schema`` (one per schema)."""
    return f"wfe.{schema}"


def notify_sql(schema: str) -> sql.Composed:
    """``pg_notify(<channel>, %(topic)s)``: the expression the providers' statements call;
    the topic (which waiters to wake) is the ``topic`` parameter."""
    return sql.SQL("pg_notify({}, %(topic)s)").format(sql.Literal(channel_for(schema)))


class Watch:
    """A waiter's interest in one topic: :attr:`fired` is set by a notification of the topic
    (or a reconnection) that arrived after the last :meth:`rearm`."""

    def __init__(self, listener: Listener, topic: str) -> None:
        self.topic = topic
        self._listener = listener
        self.fired = asyncio.Event()

    def rearm(self) -> None:
        """Forget earlier notifications; call it *before* looking for work, so a notification
        sent during the look is not missed."""
        self.fired.clear()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; ``True`` when notified (look now)."""
        if self.fired.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fired.wait(), max(timeout, 0.0))
        return self.fired.is_set()

    @property
    def listening(self) -> bool:
        """Whether the listener is connected, so a wait relies on notifications, not polls."""
        return self._listener.connected


class Listener:
    """The process's listening connection to one database and channel (shared, counted)."""

    def __init__(self, connect: Connect, channel: str) -> None:
        self._connect = connect
        self.channel = channel
        self.users = 0
        self.connected = False
        #: How many times it (re)connected; tests and logs read it.
        self.connections = 0
        self._watches: defaultdict[str, set[Watch]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"wfe-postgres listener {self.channel}"
            )

    async def ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the first connection (waiters poll until then)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.connected

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    @contextlib.contextmanager
    def watch(self, topic: str) -> Iterator[Watch]:
        """A :class:`Watch` of ``topic`` while the block runs."""
        watch = Watch(self, topic)
        self._watches[topic].add(watch)
        try:
            yield watch
        finally:
            watchers = self._watches.get(topic)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watches[topic]

    def _fire(self, topic: str | None) -> None:
        if topic is None:
            groups = list(self._watches.values())
        else:
            groups = [self._watches.get(topic, set())]
        for watchers in groups:
            for watch in watchers:
                watch.fired.set()

    async def _run(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                conn = await self._connect()
            except (psycopg.Error, OSError, WfeError) as exc:
                logger.warning("cannot connect the LISTEN connection (%s); retrying", exc)
            else:
                try:
                    async with conn:
                        await conn.execute(
                            sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
                        )
                        self.connected = True
                        self.connections += 1
                        self._ready.set()
                        delay = RECONNECT_FIRST
                        if self.connections > 1:
                            logger.info("LISTEN connection back; waking every waiter")
                        # Whatever was notified while not listening is gone: everyone looks.
                        self._fire(None)
                        async for notify in conn.notifies():
                            self._fire(notify.payload)
                except (psycopg.Error, OSError) as exc:
                    logger.warning("the LISTEN connection dropped (%s); reconnecting", exc)
                finally:
                    self.connected = False
                    # Waiters go back to polling until it is back.
                    self._fire(None)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, RECONNECT_MAX)


# One listener per event loop and database (and channel), shared by the providers of a process.
_listeners: dict[Hashable, Listener] = {}


async def acquire_listener(key: Hashable, connect: Connect, channel: str) -> Listener:
    """The listener of ``key`` (the database and channel) in this event loop, started on
    first use; give it back with :func:`release_listener`."""
    full_key = (id(asyncio.get_running_loop()), key, channel)
    listener = _listeners.get(full_key)
    if listener is None:
        listener = _listeners[full_key] = Listener(connect, channel)
        listener.start()
    listener.users += 1
    return listener


async def release_listener(listener: Listener) -> None:
    """Give back a listener; the last user stops it."""
    listener.users -= 1
    if listener.users <= 0:
        for key, value in list(_listeners.items()):
            if value is listener:
                del _listeners[key]
        await listener.stop()


class ListeningProviderMixin(PostgresProviderMixin):
    """A provider on the shared pool that also holds the process's listener of its database
    (the queue and the lock)."""

    _listener: Listener | None = None

    @property
    def listener(self) -> Listener:
        listener = self._listener
        if listener is None:
            raise ProviderError(f"{self!r} is not open; use it as 'async with'")
        return listener

    async def open(self) -> None:
        """Connect the pool (migrating the schema) and the listener. Idempotent."""
        await super().open()
        if self._listener is None:
            database = self.database
            target = database.target

            async def connect() -> psycopg.AsyncConnection[Any]:
                kwargs = {**database.connect_kwargs(), **KEEPALIVES}
                return await psycopg.AsyncConnection.connect(target.conninfo, **kwargs)

            # Not shared: a listener of its own, as another process would have.
            key: Hashable = target if self.share_connections else object()
            self._listener = await acquire_listener(key, connect, channel_for(database.schema))
            await self._listener.ready(LISTENER_READY_WAIT)

    async def close(self) -> None:
        """Release the listener and the pool. Idempotent."""
        listener, self._listener = self._listener, None
        try:
            if listener is not None:
                with anyio.CancelScope(shield=True):
                    await release_listener(listener)
        finally:
            await super().close()
