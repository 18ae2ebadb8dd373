"""Temporary stand-in for the shared connection layer (replaced by wfe_postgres._database)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from wfe_core.errors import ProviderError


class Database:
    def __init__(self, conninfo: str, schema: str = "public") -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.pool = AsyncConnectionPool(
            conninfo,
            open=False,
            min_size=1,
            max_size=10,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
        )

    async def open(self) -> None:
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    async def rows(self, query: sql.Composed, params: Any, what: str) -> list[tuple[Any, ...]]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise ProviderError(f"PostgreSQL {what} failed: {exc}") from exc
