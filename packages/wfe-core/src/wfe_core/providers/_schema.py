"""Providers that own a database schema: check it without changing it, or migrate it.

A provider with a schema migrates it when it opens (the default everywhere). Deployments
where the application may not run DDL check it instead (``wfe migrate --check``, or a
provider option that refuses to open an out-of-date schema) and apply migrations in a
separate step (``wfe migrate``). Both go through :class:`SchemaOwner`, so the CLI works the
same for every provider, ours and third parties'.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

__all__ = ["SchemaOwner", "SchemaStatus"]


@attrs.frozen
class SchemaStatus:
    """Where a provider's schema stands."""

    #: What the schema lives in, for messages (``sqlite file .wfe/wfe.db``).
    where: str
    #: The version found (0: no schema yet).
    current: int
    #: The version this provider's code writes.
    latest: int
    #: Descriptions of the migrations that would be applied, in order.
    pending: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """True when nothing needs to be applied."""
        return self.current >= self.latest


@runtime_checkable
class SchemaOwner(Protocol):
    """Implemented by providers that own a schema (SQLite, PostgreSQL, ...)."""

    async def schema_status(self) -> SchemaStatus:
        """The schema's status, read without changing anything (not even creating the
        database); the provider need not be open."""
        ...

    async def migrate_schema(self) -> SchemaStatus:
        """Apply every pending migration (once, also when several processes do it at once)
        and return the new status."""
        ...
