"""SQLite persistence, queue and lock for WFE (the embedded default).

``SqlitePersistence``, ``SqliteQueue`` and ``SqliteLock`` take a URL (``sqlite:///wfe.db``,
``sqlite:////abs/path.db``, ``sqlite:///:memory:``) and :class:`SqliteOptions`. They are
imported on first access, so importing this package (as the plugin does) does not load
SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wfe_sqlite.options import DEFAULT_URL, SqliteOptions, parse_url

if TYPE_CHECKING:
    from wfe_sqlite.lock import SqliteLock
    from wfe_sqlite.persistence import SqlitePersistence
    from wfe_sqlite.queue import SqliteQueue
    from wfe_sqlite.schema import SchemaVersionError

__all__ = [
    "DEFAULT_URL",
    "SchemaVersionError",
    "SqliteLock",
    "SqliteOptions",
    "SqlitePersistence",
    "SqliteQueue",
    "parse_url",
]

_LAZY = {
    "SqliteLock": "wfe_sqlite.lock",
    "SqlitePersistence": "wfe_sqlite.persistence",
    "SqliteQueue": "wfe_sqlite.queue",
    "SchemaVersionError": "wfe_sqlite.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wfe_sqlite' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
