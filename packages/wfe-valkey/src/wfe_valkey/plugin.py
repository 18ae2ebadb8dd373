"""The ``wfe`` plugin of wfe-valkey: the Valkey lock, queue and lifecycle publisher, all named
``valkey``.

Only hook implementations live here; the valkey client is imported inside the factories, so
listing providers stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_core.providers import capabilities as cap
from wfe_valkey.options import SCHEMES, ValkeyOptions

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "valkey"


def _lock(url: str | None, options: Any) -> Provider:
    from wfe_valkey.lock import ValkeyLock

    return ValkeyLock(url, options)


def _queue(url: str | None, options: Any) -> Provider:
    from wfe_valkey.queue import ValkeyQueue

    return ValkeyQueue(url, options)


def _lifecycle(url: str | None, options: Any) -> Provider:
    from wfe_valkey.lifecycle import ValkeyLifecycle

    return ValkeyLifecycle(url, options)


@hookimpl
def register_providers() -> list[ProviderSpec]:
    """The Valkey (or Redis) lock, queue and lifecycle publisher (valkey://host:6379/0)."""
    return [
        ProviderSpec(
            ProviderKind.LOCK,
            NAME,
            _lock,
            summary="Leases in Valkey/Redis; fencing tokens that survive a server restart",
            url_schemes=SCHEMES,
            options_class=ValkeyOptions,
            capabilities=frozenset(
                {cap.DISTRIBUTED, cap.LEASE_RENEWAL, cap.ASYNCIO_ONLY, cap.REMOTE}
            ),
        ),
        ProviderSpec(
            ProviderKind.QUEUE,
            NAME,
            _queue,
            summary="Work queues in Valkey/Redis (Lua scripts; blocking dequeue, redelivery)",
            url_schemes=SCHEMES,
            options_class=ValkeyOptions,
            capabilities=frozenset(
                {cap.DISTRIBUTED, cap.QUEUE_REDELIVERY, cap.DEQUEUE_BLOCKS, cap.ASYNCIO_ONLY}
            ),
        ),
        ProviderSpec(
            ProviderKind.LIFECYCLE,
            NAME,
            _lifecycle,
            summary="Lifecycle events to every host over Valkey/Redis pub/sub (optional stream)",
            url_schemes=SCHEMES,
            options_class=ValkeyOptions,
            capabilities=frozenset({cap.DISTRIBUTED, cap.ASYNCIO_ONLY}),
        ),
    ]
