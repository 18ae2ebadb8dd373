"""PostgreSQL persistence, queue and lock for WFE, shared by any number of hosts.

``PostgresPersistence`` takes a URL (``postgresql://user@host:5432/database``, or
``postgres://``) and :class:`PostgresOptions`. It is imported on first access, so importing
this package (as the plugin does) does not load psycopg. The schema's migrations:
:mod:`wfe_postgres.migrations`; a throw-away server for tests: :mod:`wfe_postgres.testing`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wfe_postgres.options import PostgresOptions, parse_url

if TYPE_CHECKING:
    from wfe_postgres.lock import PostgresLock
    from wfe_postgres.migrations import SchemaVersionError, apply_migrations, check_migrations
    from wfe_postgres.persistence import PostgresPersistence
    from wfe_postgres.queue import PostgresQueue

__all__ = [
    "PostgresLock",
    "PostgresOptions",
    "PostgresPersistence",
    "PostgresQueue",
    "SchemaVersionError",
    "apply_migrations",
    "check_migrations",
    "parse_url",
]

_LAZY = {
    "PostgresPersistence": "wfe_postgres.persistence",
    "PostgresQueue": "wfe_postgres.queue",
    "PostgresLock": "wfe_postgres.lock",
    "SchemaVersionError": "wfe_postgres.migrations",
    "apply_migrations": "wfe_postgres.migrations",
    "check_migrations": "wfe_postgres.migrations",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wfe_postgres' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
