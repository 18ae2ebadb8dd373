"""Several processes sharing one file: queue deliveries, lock exclusion, crashed holders."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest

from wfe_core.providers import QueueName, holder_is_gone
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

CHILD = Path(__file__).with_name("_child.py")
W = QueueName.WORKFLOW


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# Every read goes through the same buffered file object (readline), never communicate(),
# which would bypass what readline already buffered.
def _line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the child exited early: {_stderr(process)}"
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def _stderr(process: subprocess.Popen[str]) -> str:
    process.wait()
    assert process.stderr is not None
    return process.stderr.read()


def _rest(process: subprocess.Popen[str]) -> list[dict[str, Any]]:
    assert process.stdout is not None
    out = process.stdout.read()
    assert process.wait() == 0, _stderr(process)
    return [json.loads(line) for line in out.splitlines()]


async def _in_thread(func: Callable[[], T], limit: float = 60) -> T:
    """Run a blocking read in a thread, bounded; on timeout the caller kills the child,
    which ends the read."""
    with anyio.fail_after(limit):
        return await anyio.to_thread.run_sync(func, abandon_on_cancel=True)


def _reap(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.anyio
async def test_two_processes_consume_one_queue_each_item_once(db_url: str) -> None:
    async with SqlitePersistence(db_url):
        pass  # create the file first, so the children do not race on the migration
    items = [f"item-{i:03d}" for i in range(150)]
    async with SqliteQueue(db_url) as queue:
        for item in items[:50]:
            await queue.enqueue(W, item)
        children = [_spawn("consume", db_url, "2.0") for _ in range(2)]
        try:
            for child in children:
                assert await _in_thread(partial(_line, child)) == {"ready": True}
            # More arrive while they consume: found by the children's polling.
            for item in items[50:]:
                await queue.enqueue(W, item)
                await anyio.sleep(0.005)
            reports = [await _in_thread(partial(_rest, child)) for child in children]
        finally:
            _reap(children)
        delivered = [r["item"] for report in reports for r in report if "item" in r]
        assert sorted(delivered) == items, "an item was lost or handed out twice"
        assert all(r["attempt"] == 1 for report in reports for r in report if "item" in r)
        # Both took part (polling found the other process's items).
        assert all(any("item" in r for r in report) for report in reports)
        assert await queue.size(W) == 0


@pytest.mark.anyio
async def test_two_processes_contend_for_one_lock(db_url: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    rounds = 25
    async with SqliteLock(db_url):
        children = [_spawn("contend", db_url, str(rounds), str(counter)) for _ in range(2)]
        try:
            reports = [await _in_thread(partial(_rest, child)) for child in children]
        finally:
            _reap(children)
    assert int(counter.read_text()) == 2 * rounds, "two processes held the lock at once"
    tokens = [r["token"] for report in reports for r in report if "token" in r]
    assert len(tokens) == len(set(tokens)) == 2 * rounds


@pytest.mark.anyio
async def test_lock_tokens_grow_across_release_and_process_restarts(
    db_url: str, tmp_path: Path
) -> None:
    """Stores keep tokens as fences: a process started later (the lock's server restarted:
    for SQLite, the processes using the file) must never issue a token seen before."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    async with SqlitePersistence(db_url):
        pass  # create the file first
    runs: list[list[int]] = []
    for _ in range(2):
        child = _spawn("contend", db_url, "3", str(counter))
        try:
            report = await _in_thread(partial(_rest, child))
        finally:
            _reap([child])
        runs.append([r["token"] for r in report if "token" in r])
    async with SqliteLock(db_url) as lock:
        lease = await lock.acquire("counter", owner="parent", ttl=30)
        assert lease is not None
    tokens = [*runs[0], *runs[1], lease.token]
    assert len(tokens) == 7
    assert tokens == sorted(set(tokens)), f"a token went backwards: {runs} then {lease.token}"


@pytest.mark.anyio
async def test_killed_holder_lease_and_delivery_lapse(db_url: str) -> None:
    ttl = 1.0
    async with SqliteLock(db_url) as lock, SqliteQueue(db_url) as queue:
        await queue.enqueue(W, "work")
        child = _spawn("hold", db_url, str(ttl))
        try:
            held = await _in_thread(partial(_line, child))
            assert held["item"] == "work"
            # Held by the child: refused while it lives.
            assert await lock.acquire("crash", owner="parent", ttl=30) is None
            assert await queue.dequeue(W) is None
            child.send_signal(signal.SIGKILL)
            await _in_thread(child.wait)
            assert child.returncode == -signal.SIGKILL
        finally:
            _reap([child])
        started = anyio.current_time()
        lease = await lock.acquire("crash", owner="parent", ttl=30, wait=20)
        assert lease is not None, "the dead holder's lease never lapsed"
        assert lease.token > held["token"]
        message = await queue.dequeue(W, timeout=20)
        assert message is not None, "the dead consumer's delivery never came back"
        assert (message.item_id, message.attempt) == ("work", 2)
        assert anyio.current_time() - started < 15


@pytest.mark.anyio
async def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    children = [_spawn("consume", url, "0.1") for _ in range(2)]
    try:
        for child in children:
            assert await _in_thread(partial(_rest, child)) == [{"ready": True}, {"done": True}]
    finally:
        _reap(children)
    async with SqlitePersistence(url) as persistence:
        assert await persistence.next_execution_time() is None


@pytest.mark.anyio
async def test_a_lease_whose_holder_process_is_gone_is_taken_over_at_once(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock records each holder's host name and pid: a key held by a process of this
    machine that no longer runs (here killed and not even reaped yet: a zombie) is taken at
    once, with a higher token, not after its hour-long lease."""
    async with SqliteLock(db_url) as lock, SqliteQueue(db_url) as queue:
        await queue.enqueue(W, "work")
        child = _spawn("hold", db_url, "3600")
        try:
            held = await _in_thread(partial(_line, child))
            holder = await lock.holder("crash")
            assert holder is not None
            assert (holder.owner, holder.pid) == (f"pid-{child.pid}", child.pid)
            assert holder.host == socket.gethostname()
            # Alive: refused, however long the caller would wait for it.
            assert await lock.acquire("crash", owner="parent", ttl=30) is None
            child.send_signal(signal.SIGKILL)
            deadline = anyio.current_time() + 10
            while not holder_is_gone(holder.host, holder.pid):
                assert anyio.current_time() < deadline, "the child never died"
                await anyio.sleep(0.01)
            lease = await lock.acquire("crash", owner="parent", ttl=30)
        finally:
            _reap([child])
        assert lease is not None, "the dead holder's lease was not taken over"
        assert lease.token > held["token"]
        assert f"from pid-{child.pid}: its process {child.pid}" in caplog.text
        holder = await lock.holder("crash")
        assert holder is not None
        assert (holder.owner, holder.pid) == ("parent", os.getpid())


@pytest.mark.anyio
async def test_a_lease_of_a_process_on_another_machine_is_never_broken(db_url: str) -> None:
    """A holder recorded on another host name is waited for, whatever its pid says."""
    async with SqliteLock(db_url) as lock:
        lease = await lock.acquire("far", owner="here", ttl=30)
        assert lease is not None
        store = lock.store

        def move(conn: Any) -> None:
            conn.exec_driver_sql(
                "UPDATE wfe_locks SET holder_host = 'elsewhere', holder_pid = 999999999"
            )

        await store.write(move, "test")
        assert await lock.acquire("far", owner="other", ttl=30) is None
        assert not holder_is_gone("elsewhere", 999999999)
        assert holder_is_gone(socket.gethostname(), 999999999)
