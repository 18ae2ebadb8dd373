"""Change channels: waking the tasks of this process that wait for a change, and noticing
the changes other processes commit to the file."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from wfe_sqlite._connections import Connections


class ChangeChannels:
    """Named channels of in-process wake-ups (a queue, a lock), and the database's data
    version for the changes of other processes; used from one event loop."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections
        # Channel name -> events of the tasks waiting on it.
        self._waiters: dict[str, set[anyio.Event]] = {}

    def data_version(self) -> int | None:
        """A number that changes whenever a connection other than the watch one commits to
        the database (any process, this one included); ``None`` when it cannot tell.

        Waiters for other processes' work compare it between looks and query only when it
        changed. This is the one SQLite call made on the event loop: ``PRAGMA data_version``
        reads the WAL index in shared memory in microseconds, and with a zero busy timeout it
        never waits for a lock.
        """
        if self._connections.target.is_memory:
            # Only this process can write an in-memory database, and its writers wake the
            # waiters themselves: nothing else ever changes it.
            return 0
        watch = self._connections.watch
        if watch is None:
            return None
        try:
            row = watch.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else int(row[0])

    def notify(self, channel: str) -> None:
        """Wake every task of this process waiting on ``channel``."""
        waiters = self._waiters.pop(channel, None)
        if waiters:
            for waiter in waiters:
                waiter.set()

    async def wait(self, channel: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`notify` on ``channel``; True when woken."""
        if timeout <= 0:
            return False
        waiter = anyio.Event()
        self._waiters.setdefault(channel, set()).add(waiter)
        try:
            with anyio.move_on_after(timeout):
                await waiter.wait()
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[channel]
        return waiter.is_set()
