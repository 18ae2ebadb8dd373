"""The ``wfe`` plugin of wfe-sqlite: SQLite persistence, queue and lock, all named ``sqlite``.

Only hook implementations live here; SQLAlchemy is imported inside the factories, so listing
providers stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_core.providers import capabilities as cap
from wfe_sqlite.options import SqliteOptions

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "sqlite"
SCHEMES = ("sqlite",)


def _persistence(url: str | None, options: Any) -> Provider:
    from wfe_sqlite.persistence import SqlitePersistence

    return SqlitePersistence(url, options)


def _queue(url: str | None, options: Any) -> Provider:
    from wfe_sqlite.queue import SqliteQueue

    return SqliteQueue(url, options)


def _lock(url: str | None, options: Any) -> Provider:
    from wfe_sqlite.lock import SqliteLock

    return SqliteLock(url, options)


@hookimpl
def register_providers() -> list[ProviderSpec]:
    """The SQLite persistence, queue and lock (one file; sqlite:///path.db)."""
    shared = "shared by the processes using the file"
    return [
        ProviderSpec(
            ProviderKind.PERSISTENCE,
            NAME,
            _persistence,
            summary="Instances, events and subscriptions in a SQLite file (WAL, durable commits)",
            url_schemes=SCHEMES,
            options_class=SqliteOptions,
            capabilities=frozenset(
                {cap.DURABLE, cap.FENCING, cap.EXTERNAL_WORK, cap.LEASED_WRITES}
            ),
        ),
        ProviderSpec(
            ProviderKind.QUEUE,
            NAME,
            _queue,
            summary=f"Work queue in a SQLite file, {shared} (polls for other processes' items)",
            url_schemes=SCHEMES,
            options_class=SqliteOptions,
            capabilities=frozenset({cap.DURABLE, cap.DISTRIBUTED, cap.QUEUE_REDELIVERY}),
        ),
        ProviderSpec(
            ProviderKind.LOCK,
            NAME,
            _lock,
            summary=f"Leases with fencing tokens in a SQLite file, {shared}",
            url_schemes=SCHEMES,
            options_class=SqliteOptions,
            capabilities=frozenset({cap.DURABLE, cap.DISTRIBUTED, cap.LEASE_RENEWAL}),
        ),
    ]
