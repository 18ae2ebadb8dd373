"""Connections, threads and transactions shared by the SQLite persistence, queue and lock.

One :class:`Store` per database file (per event loop) is shared by every provider that
opens it, so the persistence, queue and lock of a host use one writer connection between them
and an in-memory database is one database for all three.

Blocking SQLite calls never run on the event loop (``PRAGMA data_version``, which reads shared
memory and never waits, is the one call made there; see :meth:`Store.data_version`). A store
is made of four parts, each in a module of its own:

* the connections and their PRAGMAs (``_connections``): one writer, a pool of readers (WAL
  lets them read while a write is under way), and the watch connection;
* group commit (``_writes``): writes arriving while a transaction is being written share the
  next commit and its sync;
* grouped reads (``_reads``): the reads pending together run in one reader thread call and
  one read transaction;
* change channels (``_channels``): in-process wake-ups, and noticing other processes' commits.

The writes and the read groups run in threads of the store's own (``_threads``): one for the
writer, up to ``read_connections`` for the readers.

In-memory databases have a single connection (SQLite gives each connection its own in-memory
database), so their reads go through the writer too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
import anyio.to_thread

from wfe_core.spi import SharedResources
from wfe_sqlite._channels import ChangeChannels
from wfe_sqlite._connections import Connections, driver
from wfe_sqlite._errors import wrap_error
from wfe_sqlite._reads import GroupedReads
from wfe_sqlite._threads import join_threads
from wfe_sqlite._times import from_us, now_us, to_us
from wfe_sqlite._writes import GroupCommit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy import Connection

    from wfe_sqlite.options import DatabaseTarget, SqliteOptions

__all__ = [
    "Store",
    "acquire_store",
    "driver",
    "from_us",
    "now_us",
    "release_store",
    "to_us",
    "wrap_error",
]

T = TypeVar("T")


class _Write(Protocol):
    def __call__(
        self, fn: Callable[[Connection], T], what: str = ..., *, durable: bool = ...
    ) -> Awaitable[T]: ...


class _Read(Protocol):
    def __call__(self, fn: Callable[[Connection], T], what: str = ...) -> Awaitable[T]: ...


class Store:
    """The connections of one database and the work on them, shared by the providers that
    open it.

    Shared and reference-counted by :func:`acquire_store` / :func:`release_store`;
    everything here is used from one event loop (plus the worker threads it starts).
    """

    #: Run ``fn(connection)`` in a write transaction, return its result once committed: see
    #: :meth:`wfe_sqlite._writes.GroupCommit.write`.
    write: _Write
    #: Run ``fn(connection)`` in a read transaction: see
    #: :meth:`wfe_sqlite._reads.GroupedReads.read` (in memory: on the writer).
    read: _Read
    #: Wake every task of this process waiting on a channel: see
    #: :meth:`wfe_sqlite._channels.ChangeChannels.notify`.
    notify: Callable[[str], None]
    #: Wait for a channel's wake-up: see :meth:`wfe_sqlite._channels.ChangeChannels.wait`.
    wait: Callable[[str, float], Awaitable[bool]]
    #: A number that changes when the file changes: see
    #: :meth:`wfe_sqlite._channels.ChangeChannels.data_version`.
    data_version: Callable[[], int | None]

    def __init__(self, target: DatabaseTarget) -> None:
        self.target = target
        self.options: SqliteOptions = target.options
        self.connections = Connections(target)
        self.commits = GroupCommit(self.connections)
        self.reads = GroupedReads(self.connections)
        self.changes = ChangeChannels(self.connections)
        # The parts' bound methods, not methods calling them: a write or read is the hot
        # path of every step, and a forwarding coroutine would add a frame to each.
        self.write = self.commits.write
        self.read = self._read_on_writer if target.is_memory else self.reads.read
        self.notify = self.changes.notify
        self.wait = self.changes.wait
        self.data_version = self.changes.data_version

    @property
    def where(self) -> str:
        """The database as messages name it."""
        return self.connections.where

    async def _read_on_writer(self, fn: Callable[[Connection], T], what: str = "read") -> T:
        # In-memory: the single connection serves reads as well.
        return await self.commits.write(fn, what)

    def open_blocking(self) -> None:
        """Connect and migrate (once; later calls return at once)."""
        self.connections.open_blocking()

    def close_blocking(self) -> None:
        """Close every connection (the in-memory database is gone afterwards)."""
        self.connections.close_blocking()


async def _open(store: Store) -> None:
    await anyio.to_thread.run_sync(store.open_blocking)


async def _close(store: Store) -> None:
    # On the event loop, so no job is handed to a thread after it: the threads end once the
    # jobs handed to them are done.
    pools = (store.commits.thread, store.reads.threads)
    threads = [thread for pool in pools for thread in pool.stop()]
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(join_threads, threads)
        for pool in pools:
            pool.close()
        await anyio.to_thread.run_sync(store.close_blocking)


_stores: SharedResources[DatabaseTarget, Store] = SharedResources(Store, _open, _close)


async def acquire_store(target: DatabaseTarget, *, shared: bool = True) -> Store:
    """The open store of ``target`` shared in this event loop, opening it on first use.

    Per event loop: the group-commit state and the wake-ups belong to one loop (and a store
    left open by a finished loop is never handed to the next one). ``shared=False`` gives a
    store of its own (its own connections and wake-ups), which behaves towards the others
    like one in another process.
    """
    return await _stores.acquire(target, shared=shared)


async def release_store(store: Store) -> None:
    """Drop one reference to ``store``; the last one closes it."""
    await _stores.release(store)
