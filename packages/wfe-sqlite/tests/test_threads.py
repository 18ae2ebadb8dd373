"""The store's own threads: the writer's and the readers'. A write handed to the writer's
thread is committed whatever its caller does meanwhile, closing waits for it and ends the
threads, and a process killed right after a write returned loses nothing."""

from __future__ import annotations

import contextlib
import gc
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core.errors import ProviderError, WorkflowNotFoundError
from wfe_core.models import WorkflowInstance
from wfe_sqlite import SqliteOptions, SqlitePersistence
from wfe_sqlite.engine import driver

if TYPE_CHECKING:
    from collections.abc import Callable

CHILD = Path(__file__).with_name("_child.py")
_TOKENS = "SELECT value FROM wfe_lock_tokens WHERE id = 1"
_BUMP = "UPDATE wfe_lock_tokens SET value = value + 100 WHERE id = 1"


def _spawn_creator(url: str, *, writers: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), "create", url, str(writers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wfe-sqlite-")]


@pytest.mark.anyio
async def test_a_write_running_in_the_thread_commits_though_its_caller_is_cancelled(
    tmp_path: Path,
) -> None:
    """The caller leading a group is cancelled while its transaction runs in the writer's
    thread: the call ends only once the commit is done (as another connection sees it), and
    the write is stored."""
    path = tmp_path / "wfe.db"
    async with SqlitePersistence(f"sqlite:///{path}") as persistence:
        store = persistence.store
        running, release = threading.Event(), threading.Event()

        def stored_tokens() -> int:
            # A connection of its own: what is committed, whatever the store is doing.
            with contextlib.closing(sqlite3.connect(path)) as conn:
                return int(conn.execute(_TOKENS).fetchone()[0])

        def slow_write(conn: object) -> str:
            running.set()
            release.wait(10)
            driver(conn).execute(_BUMP)  # type: ignore[arg-type]
            return "written"

        before = stored_tokens()
        # What was committed when the call ended, and how it ended.
        seen: list[int] = []
        outcome: list[str] = []

        async def write(scope: anyio.CancelScope) -> None:
            with scope:
                try:
                    outcome.append(await store.write(slow_write))
                finally:
                    seen.append(stored_tokens())

        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(write, scope)
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(running.wait, 10)
            scope.cancel()
            await anyio.sleep(0.05)
            assert seen == [], "the cancelled caller returned before its commit"
            release.set()
        assert seen == [before + 100]
        # Its transaction is the caller's: it gets the result, or the cancellation after it.
        assert outcome in (["written"], [])
        assert outcome or scope.cancelled_caught
        # The store goes on working after the cancelled call.
        instance = WorkflowInstance("flow", 1)
        await persistence.create_workflow(instance)
        assert (await persistence.get_workflow(instance.id)).revision == 1


@pytest.mark.anyio
async def test_the_others_of_a_group_get_their_results_when_its_leader_is_cancelled(
    tmp_path: Path,
) -> None:
    """A group of two commits while its leader's caller is cancelled: the other caller gets
    its own result (not the leader's cancellation), and both writes are stored."""
    path = tmp_path / "wfe.db"
    options = SqliteOptions(max_batch_size=2)
    async with SqlitePersistence(f"sqlite:///{path}", options) as persistence:
        store = persistence.store
        first_running, release_first = threading.Event(), threading.Event()
        group_running, release_group = threading.Event(), threading.Event()

        def first(conn: object) -> str:
            first_running.set()
            release_first.wait(10)
            return "first"

        def leader(conn: object) -> str:
            group_running.set()
            release_group.wait(10)
            driver(conn).execute(_BUMP)  # type: ignore[arg-type]
            return "leader"

        def other(conn: object) -> str:
            driver(conn).execute(_BUMP)  # type: ignore[arg-type]
            return "other"

        results: dict[str, object] = {}

        async def write(name: str, fn: Callable[[object], str]) -> None:
            try:
                results[name] = await store.write(fn)
            except BaseException as exc:
                results[name] = type(exc).__name__
                raise

        leader_scope = anyio.CancelScope()

        async def lead() -> None:
            with leader_scope:
                await write("leader", leader)

        async with anyio.create_task_group() as tg:
            # The writer is busy with ``first`` while the group of two lines up behind it.
            tg.start_soon(write, "first", first)
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(first_running.wait, 10)
            tg.start_soon(lead)
            await anyio.sleep(0.01)
            tg.start_soon(write, "other", other)
            await anyio.sleep(0.01)
            release_first.set()
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(group_running.wait, 10)
            leader_scope.cancel()
            await anyio.sleep(0.05)
            release_group.set()
        assert results["other"] == "other"
        assert results["first"] == "first"
        with contextlib.closing(sqlite3.connect(path)) as conn:
            tokens = int(conn.execute(_TOKENS).fetchone()[0])
        assert tokens >= 200  # both writes of the group are stored


@pytest.mark.anyio
async def test_closing_waits_for_the_write_under_way_and_ends_the_threads(tmp_path: Path) -> None:
    """The store closes while a write runs in its thread: the write commits and its caller
    gets its result, then the threads end; a write handed over after that fails plainly."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    before = set(_store_threads())
    running, release = threading.Event(), threading.Event()
    results: list[str] = []

    def held(conn: object) -> str:
        running.set()
        release.wait(10)
        driver(conn).execute(_BUMP)  # type: ignore[arg-type]
        return "written"

    persistence = SqlitePersistence(url, SqliteOptions(read_connections=2))
    async with anyio.create_task_group() as tg:
        await persistence.__aenter__()
        store = persistence.store
        # Slow reads at once (groups may run beside a slow one): never more reader threads
        # than reader connections.
        async with anyio.create_task_group() as reads:
            for _ in range(20):
                reads.start_soon(store.read, lambda conn: time.sleep(0.002))
        started = sorted(t.name for t in set(_store_threads()) - before)
        assert started[0] == "wfe-sqlite-reader-0", started
        assert len(started) <= 3, started

        async def write() -> None:
            results.append(await store.write(held))

        tg.start_soon(write)
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(running.wait, 10)
        # Let the write go on only once the close is under way.
        tg.start_soon(anyio.to_thread.run_sync, lambda: (time.sleep(0.05), release.set()))
        with anyio.fail_after(10):
            await persistence.__aexit__(None, None, None)
        assert release.is_set(), "closed without waiting for the write under way"
    assert results == ["written"]
    assert not (set(_store_threads()) - before), "the store's threads outlived it"
    with pytest.raises(ProviderError, match="closed"):
        await store.write(held)
    with contextlib.closing(sqlite3.connect(tmp_path / "wfe.db")) as conn:
        assert conn.execute(_TOKENS).fetchone()[0] == 100


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.anyio
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
async def test_a_store_opened_and_closed_again_and_again_leaves_no_file_open(
    tmp_path: Path,
) -> None:
    """A long-lived program that opens and closes stores (a test suite, a CLI embedded in a
    service) does not run out of file descriptors: closing frees the connections and the
    threads' wake-up of the event loop."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    async with SqlitePersistence(url) as persistence:  # migrated once, outside the count
        await persistence.create_workflow(WorkflowInstance("flow", 1))
    before = _open_fds()
    for _ in range(5):
        async with SqlitePersistence(url) as persistence:
            instance = WorkflowInstance("flow", 1)
            await persistence.create_workflow(instance)
            assert (await persistence.get_workflow(instance.id)).id == instance.id
    assert _open_fds() == before


@pytest.mark.anyio
async def test_a_process_killed_right_after_writes_returned_lost_none_of_them(
    tmp_path: Path,
) -> None:
    """Every instance whose ``create_workflow`` returned in a child process (four writers at
    once, so commits are shared) is stored after the child is killed with SIGKILL while it
    goes on writing."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    child = _spawn_creator(url, writers=4)
    assert child.stdout is not None
    stdout = child.stdout
    reported: list[str] = []

    def read_some() -> None:
        while len(reported) < 200:
            line = stdout.readline()
            assert line, "the child exited early"
            reported.append(json.loads(line)["created"])

    try:
        with anyio.fail_after(60):
            await anyio.to_thread.run_sync(read_some, abandon_on_cancel=True)
        # Right after a report: writes are still being handed to the writer's thread.
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        await anyio.to_thread.run_sync(child.wait)
    # What the child reported before it died (lines already in the pipe count too).
    reported.extend(json.loads(line)["created"] for line in stdout.read().splitlines() if line)
    stdout.close()
    assert child.stderr is not None
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    async with SqlitePersistence(url) as persistence:
        missing = []
        for workflow_id in reported:
            try:
                await persistence.get_workflow(workflow_id)
            except WorkflowNotFoundError:
                missing.append(workflow_id)
    assert not missing, f"{len(missing)} of {len(reported)} reported writes were lost"


def test_a_store_outlives_its_event_loop_and_serves_the_next(tmp_path: Path) -> None:
    # Two anyio.run calls with one store (a session-wide fixture, a CLI making two calls).
    store = SqlitePersistence(f"sqlite:///{tmp_path / 'two-loops.db'}")
    first = WorkflowInstance("flow", 1, reference="first")
    second = WorkflowInstance("flow", 1, reference="second")

    async def open_and_create() -> None:
        await store.__aenter__()
        await store.create_workflow(first)

    async def create_and_close() -> None:
        await store.create_workflow(second)
        assert (await store.get_workflow(first.id)).reference == "first"
        await store.__aexit__(None, None, None)

    anyio.run(open_and_create)
    anyio.run(create_and_close)


@pytest.mark.anyio
async def test_writes_and_reads_leave_no_garbage_for_the_collector(tmp_path: Path) -> None:
    """A store's writes and reads leave no reference cycles behind: a busy host does not pay
    for garbage collections (and their pauses) growing with the work it does."""
    async with SqlitePersistence(f"sqlite:///{tmp_path / 'wfe.db'}") as persistence:
        instance = WorkflowInstance("flow", 1)
        await persistence.create_workflow(instance)
        gc.collect()
        gc.disable()
        try:
            for _ in range(300):
                instance.data = {"n": instance.revision}
                await persistence.persist_workflow(instance)
                await persistence.get_workflow(instance.id)
            found = gc.collect()
        finally:
            gc.enable()
    assert found < 100, f"{found} objects in reference cycles after 300 writes and reads"
