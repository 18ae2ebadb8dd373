"""The built-in plugin: in-memory providers of every kind, named ``memory``.

The host registers this module itself (it is not an entry point), so the in-memory providers
are there even with plugin autoloading disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_core.providers import capabilities as cap

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "memory"


def _persistence(url: str | None, options: Any) -> Provider:
    from wfe_core.memory._persistence import MemoryPersistence

    return MemoryPersistence()


def _lock(url: str | None, options: Any) -> Provider:
    from wfe_core.memory._lock import MemoryLock

    return MemoryLock()


def _queue(url: str | None, options: Any) -> Provider:
    from wfe_core.memory._queue import MemoryQueue

    return MemoryQueue()


def _search(url: str | None, options: Any) -> Provider:
    from wfe_core.memory._search import MemorySearch

    return MemorySearch()


def _lifecycle(url: str | None, options: Any) -> Provider:
    from wfe_core.memory._lifecycle import MemoryLifecycle

    return MemoryLifecycle()


@hookimpl
def register_providers() -> list[ProviderSpec]:
    in_process = "in this process only; lost when it exits"
    return [
        ProviderSpec(
            ProviderKind.PERSISTENCE,
            NAME,
            _persistence,
            summary=f"Instances {in_process}",
            url_schemes=("memory",),
            capabilities=frozenset({cap.FENCING, cap.EXTERNAL_WORK}),
        ),
        ProviderSpec(
            ProviderKind.LOCK,
            NAME,
            _lock,
            summary=f"Locks between tasks {in_process}",
            url_schemes=("memory",),
            capabilities=frozenset({cap.LEASE_RENEWAL}),
        ),
        ProviderSpec(
            ProviderKind.QUEUE,
            NAME,
            _queue,
            summary=f"Work queue {in_process}",
            url_schemes=("memory",),
            capabilities=frozenset({cap.DEQUEUE_BLOCKS, cap.QUEUE_REDELIVERY}),
        ),
        ProviderSpec(
            ProviderKind.SEARCH,
            NAME,
            _search,
            summary=f"Substring search {in_process}",
            url_schemes=("memory",),
            capabilities=frozenset({cap.SEARCH_BY_DATA}),
        ),
        ProviderSpec(
            ProviderKind.LIFECYCLE,
            NAME,
            _lifecycle,
            summary=f"Lifecycle events to subscribers {in_process}",
            url_schemes=("memory",),
        ),
    ]
