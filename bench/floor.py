"""The physical floor: raw single-row INSERT + COMMIT transactions per second.

Measured on the same kind of database, in the same run, with the durability settings the
WFE provider uses, so the engine's figures can be read as a fraction of what the database
itself allows. For SQLite those are wfe-sqlite's: WAL journal, ``synchronous=FULL`` (its
default, read from :class:`wfe_sqlite.SqliteOptions`), ``foreign_keys=ON`` and
``BEGIN IMMEDIATE`` transactions, one connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

#: Bytes of the stored document of each row (about a finished 3-step instance's JSON).
ROW_BYTES = 1500


def sqlite_synchronous() -> str:
    """The ``synchronous`` level wfe-sqlite uses by default."""
    try:
        from wfe_sqlite import SqliteOptions
    except ImportError:  # pragma: no cover - the bench environment has it
        return "full"
    return str(SqliteOptions().synchronous)


def sqlite_floor(path: str, commits: int) -> dict[str, Any]:
    """Commits per second of single-row INSERTs into a fresh SQLite file at ``path``."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    synchronous = sqlite_synchronous()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(
            "CREATE TABLE floor (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " document TEXT NOT NULL)"
        )
        document = "x" * ROW_BYTES
        warm = max(commits // 10, 10)
        for i in range(warm):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO floor (id, document) VALUES (?, ?)", (f"w{i}", document))
            conn.execute("COMMIT")
        started = time.perf_counter()
        for i in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO floor (id, document) VALUES (?, ?)", (f"r{i}", document))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return {
        "commits_per_s": commits / elapsed,
        "settings": f"journal_mode={mode}, synchronous={synchronous}",
    }


def postgres_floor(url: str, commits: int) -> dict[str, Any]:
    """Commits per second of single-row INSERTs (autocommit) on the PostgreSQL at ``url``,
    with the server's default durability (``fsync=on``, ``synchronous_commit=on``)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute(
            "CREATE TABLE bench_floor (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " document TEXT NOT NULL)"
        )
        sync = conn.execute("SHOW synchronous_commit").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
        document = "x" * ROW_BYTES
        insert = "INSERT INTO bench_floor (id, document) VALUES (%s, %s)"
        for i in range(max(commits // 10, 10)):
            conn.execute(insert, (f"w{i}", document))
        started = time.perf_counter()
        for i in range(commits):
            conn.execute(insert, (f"r{i}", document))
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_floor")
    return {
        "commits_per_s": commits / elapsed,
        "settings": f"fsync={fsync and fsync[0]}, synchronous_commit={sync and sync[0]}",
    }
