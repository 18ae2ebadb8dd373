"""Lease holders on PostgreSQL: who holds a key, and a same-host holder killed while holding
it is taken over at once, by another process, with a larger token."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from wfe_core.providers import holder_is_gone
from wfe_postgres.lock import PostgresLock

CHILD = Path(__file__).with_name("_lock_child.py")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        assert process.stderr is not None
        raise AssertionError(f"the child exited early: {process.stderr.read()}")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def _reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.anyio
async def test_a_lease_whose_holder_process_is_gone_is_taken_over_at_once(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The child holds the key for an hour; once it is killed (not even reaped yet: a
    zombie), this process takes the key at once, with a larger token, and says whose it was."""
    async with PostgresLock(db_url, share_connections=False) as lock:
        child = _spawn(db_url, "crash", "3600")
        try:
            with anyio.fail_after(60):
                held = await anyio.to_thread.run_sync(_line, child, abandon_on_cancel=True)
            holder = await lock.holder("crash")
            assert holder is not None
            assert (holder.owner, holder.host, holder.pid) == (
                f"pid-{child.pid}",
                socket.gethostname(),
                child.pid,
            )
            # Alive: refused.
            assert await lock.acquire("crash", owner="parent", ttl=30) is None
            child.send_signal(signal.SIGKILL)
            deadline = anyio.current_time() + 10
            while not holder_is_gone(holder.host, holder.pid):
                assert anyio.current_time() < deadline, "the child never died"
                await anyio.sleep(0.01)
            started = anyio.current_time()
            lease = await lock.acquire("crash", owner="parent", ttl=30)
            took = anyio.current_time() - started
        finally:
            _reap(child)
        assert lease is not None, "the dead holder's lease was not taken over"
        assert took < 5
        assert lease.token > held["token"]
        assert f"from pid-{child.pid}: its process {child.pid}" in caplog.text
        holder = await lock.holder("crash")
        assert holder is not None
        assert (holder.owner, holder.pid) == ("parent", os.getpid())


@pytest.mark.anyio
async def test_a_lease_of_a_process_on_another_machine_is_never_broken(db_url: str) -> None:
    """A holder recorded on another host name is waited for, whatever its pid says; and a
    lease taken before holders were recorded (no host, no pid) is never broken either."""
    async with PostgresLock(db_url) as lock:
        assert await lock.acquire("far", owner="here", ttl=30) is not None
        assert await lock.acquire("old", owner="here", ttl=30) is not None
    schema = db_url.rpartition("schema=")[2]
    with psycopg.connect(db_url.partition("?")[0], autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {}.wfe_locks SET holder_host = 'elsewhere', holder_pid = 999999999"
                " WHERE key = 'far'"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL(
                "UPDATE {}.wfe_locks SET holder_host = NULL, holder_pid = NULL WHERE key = 'old'"
            ).format(sql.Identifier(schema))
        )
    async with PostgresLock(db_url) as lock:
        assert await lock.acquire("far", owner="other", ttl=30) is None
        assert await lock.acquire("old", owner="other", ttl=30) is None
        holder = await lock.holder("far")
        assert holder is not None
        assert (holder.owner, holder.host, holder.pid) == ("here", "elsewhere", 999999999)
    assert holder_is_gone(socket.gethostname(), 999999999)
