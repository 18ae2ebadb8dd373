"""What the three SQLite providers share: the URL, the options and the shared store."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from wfe_core.errors import ProviderError
from wfe_core.providers import SchemaStatus
from wfe_sqlite.engine import acquire_store, release_store
from wfe_sqlite.options import DEFAULT_URL, parse_url
from wfe_sqlite.schema import LATEST_VERSION, MIGRATIONS, read_version

if TYPE_CHECKING:
    from wfe_sqlite.engine import Store
    from wfe_sqlite.options import DatabaseTarget, SqliteOptions

__all__ = ["SqliteProviderMixin"]


class SqliteProviderMixin:
    """Opens and closes the shared :class:`~wfe_sqlite.engine.Store` of the provider's URL.

    The URL is checked when the provider is built, so a bad one fails at configuration time
    with a :class:`~wfe_core.errors.ConfigurationError`, not at the first use.
    """

    def __init__(
        self,
        url: str | None = DEFAULT_URL,
        options: SqliteOptions | None = None,
        *,
        share_connections: bool = True,
    ) -> None:
        self.target: DatabaseTarget = parse_url(url, options)
        self.url = url if url is not None else DEFAULT_URL
        #: Share the connections (and the in-process wake-ups) of the other providers of this
        #: process on the same database. ``False`` opens its own, so the provider acts towards
        #: the others as if it were in another process (an in-memory database is then its own).
        self.share_connections = share_connections
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The open store (``ProviderError`` when the provider is not open)."""
        store = self._store
        if store is None:
            raise ProviderError(
                f"{type(self).__name__}({self.url!r}) is not open; use it as 'async with'"
            )
        return store

    async def open(self) -> None:
        """Open the database (creating and migrating it as needed). Idempotent."""
        if self._store is None:
            self._store = await acquire_store(self.target, shared=self.share_connections)

    async def close(self) -> None:
        """Release the database (the last provider to close it closes it). Idempotent."""
        store, self._store = self._store, None
        if store is not None:
            await release_store(store)

    # -- the schema (wfe_core.providers.SchemaOwner; `wfe migrate`) ------------------------
    @property
    def _where(self) -> str:
        return "in-memory database" if self.target.is_memory else f"database {self.target.path}"

    async def schema_status(self) -> SchemaStatus:
        """The file's schema version, read without creating or changing the file."""
        return await anyio.to_thread.run_sync(self._read_status)

    def _read_status(self) -> SchemaStatus:
        current = 0
        if not self.target.is_memory and Path(self.target.path).exists():
            # Read-only and without the provider's engine: checking must change nothing.
            uri = f"{Path(self.target.path).resolve().as_uri()}?mode=ro"
            try:
                with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                    current = read_version(conn)
            except sqlite3.Error as exc:
                raise ProviderError(f"sqlite: cannot read {self._where}: {exc}") from exc
        pending = tuple(m.description for m in MIGRATIONS if m.version > current)
        return SchemaStatus(self._where, current, LATEST_VERSION, pending)

    async def migrate_schema(self) -> SchemaStatus:
        """Apply the pending migrations (opening the database migrates it) and report."""
        opened = self._store is None
        await self.open()
        if opened:
            await self.close()
        return await self.schema_status()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
