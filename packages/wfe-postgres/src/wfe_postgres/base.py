"""What the PostgreSQL providers share: the URL, the options and the shared connection pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.errors import ProviderError
from wfe_postgres._database import acquire_database, release_database
from wfe_postgres.options import parse_url

if TYPE_CHECKING:
    from wfe_core.providers import SchemaStatus
    from wfe_postgres._database import Database
    from wfe_postgres.options import DatabaseTarget, PostgresOptions

__all__ = ["PostgresProviderMixin"]


class PostgresProviderMixin:
    """Opens and closes the shared connection pool of the provider's URL and options.

    The URL is checked when the provider is built, so a bad one fails at configuration time
    with a :class:`~wfe_core.errors.ConfigurationError`, not at the first use. Opening
    connects (waiting up to ``connect_timeout``) and brings the schema up to date (or checks
    it, with ``migrate=False``).
    """

    def __init__(
        self,
        url: str | None,
        options: PostgresOptions | None = None,
        *,
        share_connections: bool = True,
    ) -> None:
        self.target: DatabaseTarget = parse_url(url, options)
        #: Share the pool of the other providers of this process on the same URL and
        #: options. ``False`` opens a pool of its own, so the provider acts towards the others
        #: as if it were in another process.
        self.share_connections = share_connections
        self._database: Database | None = None

    @property
    def database(self) -> Database:
        """The open database (``ProviderError`` when the provider is not open)."""
        database = self._database
        if database is None:
            raise ProviderError(
                f"{type(self).__name__}({self.target.display!r}) is not open;"
                " use it as 'async with'"
            )
        return database

    async def open(self) -> None:
        """Connect and bring the schema up to date (once per shared pool). Idempotent."""
        if self._database is None:
            self._database = await acquire_database(self.target, shared=self.share_connections)

    async def close(self) -> None:
        """Release the pool (the last provider to close it closes it). Idempotent."""
        database, self._database = self._database, None
        if database is not None:
            await release_database(database)

    # -- the schema (wfe_core.providers.SchemaOwner; `wfe migrate`) ------------------------
    @property
    def schema_where(self) -> str:
        """The schema and database, for messages (``schema wfe on postgresql://...``)."""
        return f"schema {self.target.options.schema} on {self.target.display}"

    async def schema_status(self) -> SchemaStatus:
        """The schema's version, read without changing anything (the provider need not be
        open; a schema that does not exist yet is version 0)."""
        from wfe_postgres.migrations import check_migrations

        found = await check_migrations(self.target.conninfo, self.target.options)
        return found.status(self.schema_where)

    async def migrate_schema(self) -> SchemaStatus:
        """Apply the pending migrations (under the advisory lock) and report the new status."""
        from wfe_postgres.migrations import apply_migrations

        await apply_migrations(self.target.conninfo, self.target.options)
        return await self.schema_status()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target.display!r})"
