"""Open resources shared by the providers of one process: one per key and event loop,
reference counted.

A provider package keeps one :class:`SharedResources` for the thing its providers share (the
SQLite store of a database file, the PostgreSQL pool of a URL and its options): the first
:meth:`~SharedResources.acquire` of a key creates and opens it, later ones in the same event
loop get the same object, and the last :meth:`~SharedResources.release` closes it.

Per event loop, because what such a resource holds (wake-ups, a pool's tasks, group-commit
state) belongs to one loop, and one left open by a finished loop must never be handed to the
next one.

Internal: other distributions import these names from :mod:`wfe_core.spi`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio.lowlevel
import attrs

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

__all__ = ["SharedResources"]


@attrs.define(eq=False)
class _Entry(Generic[R]):
    resource: R
    #: Where it is registered; ``None`` for one of its own (``shared=False``).
    key: tuple[Hashable, object] | None
    refs: int = 0


class SharedResources(Generic[K, R]):
    """The open resources of one kind, shared per key and event loop.

    ``create(key)`` makes one (cheaply, without I/O); ``open(resource)`` opens it (and may be
    called again by later acquirers while the first is still opening: it must return at
    once when it is open); ``close(resource)`` closes it after the last release.
    """

    def __init__(
        self,
        create: Callable[[K], R],
        open: Callable[[R], Awaitable[None]],
        close: Callable[[R], Awaitable[None]],
    ) -> None:
        self._create = create
        self._open = open
        self._close = close
        # acquire and release run on event loops, but several loops (threads) may share the
        # registry: the lock keeps the counts right between them.
        self._lock = threading.Lock()
        self._by_key: dict[tuple[Hashable, object], _Entry[R]] = {}
        # By id: the entry holds the resource, so its id is not reused while it is held.
        self._held: dict[int, _Entry[R]] = {}

    async def acquire(self, key: K, *, shared: bool = True) -> R:
        """The open resource of ``key`` in this event loop, created and opened on first use.

        ``shared=False`` gives one of its own (not found by later calls), which behaves
        towards the shared one like one in another process. When opening fails, the
        reference is released again (the last one closes it) and the error propagates.
        """
        with self._lock:
            if shared:
                registry_key = (key, anyio.lowlevel.current_token())
                entry = self._by_key.get(registry_key)
                if entry is None:
                    entry = self._by_key[registry_key] = _Entry(self._create(key), registry_key)
                    self._held[id(entry.resource)] = entry
            else:
                entry = _Entry(self._create(key), None)
                self._held[id(entry.resource)] = entry
            entry.refs += 1
        try:
            await self._open(entry.resource)
        except BaseException:
            await self.release(entry.resource)
            raise
        return entry.resource

    async def release(self, resource: R) -> None:
        """Drop one reference to ``resource``; the last one closes it (a resource not held,
        or no longer, is left alone)."""
        with self._lock:
            entry = self._held.get(id(resource))
            if entry is None or entry.resource is not resource:
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            del self._held[id(resource)]
            if entry.key is not None and self._by_key.get(entry.key) is entry:
                del self._by_key[entry.key]
        await self._close(resource)

    def references(self, resource: R) -> int:
        """How many acquisitions of ``resource`` are not released yet (0: closed or never
        acquired here)."""
        with self._lock:
            entry = self._held.get(id(resource))
            return entry.refs if entry is not None and entry.resource is resource else 0
