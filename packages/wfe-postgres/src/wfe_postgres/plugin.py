"""The ``wfe`` plugin of wfe-postgres: PostgreSQL persistence, queue and lock, all named
``postgres`` (URLs ``postgresql://`` and ``postgres://``).

Only hook implementations live here; psycopg is imported inside the factories, so listing
providers stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_core.providers import capabilities as cap
from wfe_postgres.options import PostgresOptions

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "postgres"
SCHEMES = ("postgresql", "postgres")


# -- queue and lock ----------------------------------------------------------------------------
def _queue(url: str | None, options: Any) -> Provider:
    from wfe_postgres.queue import PostgresQueue

    return PostgresQueue(url, options)


def _lock(url: str | None, options: Any) -> Provider:
    from wfe_postgres.lock import PostgresLock

    return PostgresLock(url, options)


def queue_and_lock_specs() -> list[ProviderSpec]:
    """The queue and the lock (kept apart from the persistence's spec)."""
    return [
        ProviderSpec(
            ProviderKind.QUEUE,
            NAME,
            _queue,
            summary="Work queue in PostgreSQL (SKIP LOCKED, visibility timeout, LISTEN/NOTIFY"
            " wake-ups), shared by every host on the database",
            url_schemes=SCHEMES,
            options_class=PostgresOptions,
            capabilities=frozenset(
                {
                    cap.DURABLE,
                    cap.DISTRIBUTED,
                    cap.QUEUE_REDELIVERY,
                    cap.DEQUEUE_BLOCKS,
                    cap.ASYNCIO_ONLY,
                }
            ),
        ),
        ProviderSpec(
            ProviderKind.LOCK,
            NAME,
            _lock,
            summary="Leases in PostgreSQL with fencing tokens that only grow (database clock)",
            url_schemes=SCHEMES,
            options_class=PostgresOptions,
            capabilities=frozenset(
                {cap.DURABLE, cap.DISTRIBUTED, cap.LEASE_RENEWAL, cap.ASYNCIO_ONLY}
            ),
        ),
    ]


@hookimpl
def register_providers() -> list[ProviderSpec]:
    """The PostgreSQL queue and lock (postgresql://...)."""
    return queue_and_lock_specs()
