"""The ``wfe`` plugin of wfe-postgres: the PostgreSQL providers, named ``postgres``.

Only hook implementations live here; psycopg is imported inside the factories, so listing
providers stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_core.providers import capabilities as cap
from wfe_postgres.options import SCHEMES, PostgresOptions

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "postgres"


def _persistence(url: str | None, options: Any) -> Provider:
    from wfe_postgres.persistence import PostgresPersistence

    return PostgresPersistence(url, options)


# -- queue and lock ----------------------------------------------------------------------------
def _queue(url: str | None, options: Any) -> Provider:
    from wfe_postgres.queue import PostgresQueue

    return PostgresQueue(url, options)


def _lock(url: str | None, options: Any) -> Provider:
    from wfe_postgres.lock import PostgresLock

    return PostgresLock(url, options)


def _queue_and_lock_specs() -> list[ProviderSpec]:
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
                {cap.DURABLE, cap.DISTRIBUTED, cap.LEASE_RENEWAL, cap.ASYNCIO_ONLY, cap.REMOTE}
            ),
        ),
    ]


@hookimpl
def register_providers() -> list[ProviderSpec]:
    """The PostgreSQL providers (postgresql://user@host:5432/database, shared by many hosts)."""
    return [
        ProviderSpec(
            ProviderKind.PERSISTENCE,
            NAME,
            _persistence,
            summary="Instances, events and subscriptions in PostgreSQL, shared by many hosts"
            " (fenced writes, versioned schema)",
            url_schemes=SCHEMES,
            options_class=PostgresOptions,
            capabilities=frozenset(
                {
                    cap.DURABLE,
                    cap.FENCING,
                    cap.ASYNCIO_ONLY,
                    cap.EXTERNAL_WORK,
                    cap.REMOTE,
                    cap.LEASED_WRITES,
                }
            ),
        ),
        *_queue_and_lock_specs(),
    ]
