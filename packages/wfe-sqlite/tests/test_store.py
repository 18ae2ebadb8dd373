"""SQLite specifics: durability across close and reopen, group commit, the shared in-memory
database, the chosen pragmas, and driver errors surfacing as WFE errors."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from wfe_core.errors import ConcurrencyError, ProviderError, WorkflowNotFoundError
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.providers import QueueName
from wfe_core.spi import utcnow
from wfe_sqlite import SqliteLock, SqliteOptions, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

W = QueueName.WORKFLOW


@pytest.mark.anyio
async def test_everything_survives_close_and_reopen(db_url: str) -> None:
    instance = WorkflowInstance("flow", 1, data={"step": 1})
    event = Event("approval", "42", data={"ok": True})
    async with SqlitePersistence(db_url) as persistence:
        await persistence.create_workflow(instance)
        instance.data["step"] = 2
        instance.status = WorkflowStatus.SUSPENDED
        subscription = EventSubscription(instance.id, "p", 1, "approval", "42", utcnow())
        error = ExecutionError(instance.id, "p", "boom")
        await persistence.persist_workflow(instance, subscriptions=[subscription], errors=[error])
        await persistence.create_event(event)
    async with SqliteQueue(db_url) as queue:
        for item in ("a", "b", "c"):
            await queue.enqueue(W, item)
        in_flight = await queue.dequeue(W, visibility_timeout=0.3)
        assert in_flight is not None
    async with SqliteLock(db_url) as lock:
        lease = await lock.acquire("held", owner="me", ttl=60)
        assert lease is not None

    async with (
        SqlitePersistence(db_url) as persistence,
        SqliteQueue(db_url) as queue,
        SqliteLock(db_url) as lock,
    ):
        loaded = await persistence.get_workflow(instance.id)
        assert (loaded.revision, loaded.status, loaded.data) == (
            2,
            WorkflowStatus.SUSPENDED,
            {"step": 2},
        )
        assert [e.message for e in await persistence.get_errors(instance.id)] == ["boom"]
        assert (await persistence.get_subscription(subscription.id)).event_key == "42"
        assert (await persistence.get_event(event.id)).data == {"ok": True}
        # The waiting items are still there in order; the lapsed delivery comes back after.
        order = []
        while (message := await queue.dequeue(W, timeout=2.0)) is not None:
            order.append((message.item_id, message.attempt))
            await queue.ack(message)
        assert order == [("b", 1), ("c", 1), ("a", 2)]
        # The lease is held across the restart, and the new holder of its key gets a new token.
        assert await lock.acquire("held", owner="other", ttl=60) is None
        await lock.release(lease)
        again = await lock.acquire("held", owner="other", ttl=60)
        assert again is not None
        assert again.token > lease.token


@pytest.mark.anyio
async def test_group_commit_fails_only_the_stale_writes(db_url: str) -> None:
    """Many concurrent writes share transactions; a stale one fails alone."""
    async with SqlitePersistence(db_url) as persistence:
        fresh = [WorkflowInstance("flow", 1, data={"i": i}) for i in range(60)]
        for instance in fresh:
            await persistence.create_workflow(instance)
        stale = [await persistence.get_workflow(i.id) for i in fresh[::3]]
        for instance in stale:
            instance.revision -= 1 if instance.revision > 1 else 0
        # Make the stale copies stale: bump the stored revision of every third instance.
        for instance in fresh[::3]:
            await persistence.persist_workflow(instance)
        outcomes: dict[str, str] = {}

        async def write(instance: WorkflowInstance, label: str) -> None:
            try:
                await persistence.persist_workflow(
                    instance, errors=[ExecutionError(instance.id, "p", label)]
                )
                outcomes[label] = "ok"
            except ConcurrencyError:
                outcomes[label] = "stale"

        async with anyio.create_task_group() as tg:
            for index, instance in enumerate(fresh):
                tg.start_soon(write, instance, f"fresh-{index}")
            for index, instance in enumerate(stale):
                tg.start_soon(write, instance, f"stale-{index}")
        assert {k for k, v in outcomes.items() if v == "stale"} == {
            f"stale-{i}" for i in range(len(stale))
        }
        for index, instance in enumerate(fresh):
            stored = await persistence.get_workflow(instance.id)
            assert stored.revision == instance.revision
            messages = [e.message for e in await persistence.get_errors(instance.id)]
            assert messages == [f"fresh-{index}"], "a stale write stored its errors"


@pytest.mark.anyio
async def test_group_commit_survives_a_failing_operation(db_url: str) -> None:
    """A database error in one operation of a group does not fail the others."""
    async with SqlitePersistence(db_url) as persistence:
        store = persistence.store
        created = [WorkflowInstance("flow", 1) for _ in range(20)]

        def broken(conn: object) -> None:
            raise sqlite3.OperationalError("disk on fire")

        results: list[str] = []

        async def create(instance: WorkflowInstance) -> None:
            await persistence.create_workflow(instance)
            results.append("ok")

        async def fail() -> None:
            with pytest.raises(ProviderError, match="disk on fire"):
                await store.write(broken, "broken write")
            results.append("failed")

        async with anyio.create_task_group() as tg:
            for index, instance in enumerate(created):
                tg.start_soon(create, instance)
                if index % 5 == 0:
                    tg.start_soon(fail)
        assert sorted(results) == ["failed"] * 4 + ["ok"] * 20
        assert len(await persistence.get_workflows([i.id for i in created])) == 20


@pytest.mark.anyio
async def test_cancelled_caller_does_not_break_the_group(db_url: str) -> None:
    async with SqlitePersistence(db_url) as persistence:
        instances = [WorkflowInstance("flow", 1) for _ in range(30)]
        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(persistence.create_workflow, instance)
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        # Every write that was queued still happened (writes are not abandoned half way),
        # and the provider still works.
        extra = WorkflowInstance("flow", 1)
        await persistence.create_workflow(extra)
        assert (await persistence.get_workflow(extra.id)).revision == 1


@pytest.mark.anyio
async def test_cancelled_writers_return_only_after_their_commit(db_url: str) -> None:
    """Callers cancelled while their writes wait in line (one of them due to lead its group,
    one alone in its group) still see their writes committed before they return, and the
    groups behind them still run."""
    async with SqlitePersistence(db_url, SqliteOptions(max_batch_size=2)) as persistence:
        store = persistence.store
        running, release = threading.Event(), threading.Event()
        ran: list[str] = []
        # Whether its write had run when each caller's call ended (by return or cancellation).
        committed_first: dict[str, bool] = {}
        results: dict[str, str] = {}
        scopes: dict[str, anyio.CancelScope] = {}

        def step(name: str) -> Callable[[object], str]:
            def fn(conn: object) -> str:
                if name == "first":
                    running.set()
                    release.wait(10)
                ran.append(name)
                return name

            return fn

        async def write(name: str) -> None:
            with anyio.CancelScope() as scope:
                scopes[name] = scope
                try:
                    results[name] = await store.write(step(name))
                finally:
                    committed_first[name] = name in ran

        names = ["a1", "a2", "b1", "b2", "c1"]
        async with anyio.create_task_group() as tg:
            # The first group holds the writer while the next three (of two at most) line up.
            tg.start_soon(write, "first")
            await anyio.to_thread.run_sync(running.wait, 10)
            for name in names:
                tg.start_soon(write, name)
            while len(scopes) < len(names) + 1:
                await anyio.lowlevel.checkpoint()
            for name in ("a1", "b2", "c1"):
                scopes[name].cancel()
            await anyio.sleep(0.05)
            assert committed_first == {}, "a caller returned before its write was committed"
            release.set()
        assert ran == ["first", *names]
        assert committed_first == dict.fromkeys(["first", *names], True)
        assert {name: results[name] for name in ("first", "a2", "b1")} == {
            "first": "first",
            "a2": "a2",
            "b1": "b1",
        }
        # The store keeps working.
        assert await store.write(step("after")) == "after"


@pytest.mark.anyio
async def test_memory_database_is_shared_by_the_providers_of_a_process() -> None:
    url = "sqlite:///:memory:"
    instance = WorkflowInstance("flow", 1)
    async with SqlitePersistence(url) as first, SqlitePersistence(url) as second:
        assert first.store is second.store
        await first.create_workflow(instance)
        assert (await second.get_workflow(instance.id)).id == instance.id
        async with SqliteQueue(url) as queue:
            assert queue.store is first.store
    # Once every provider closed, the database is gone: the next one starts empty.
    async with SqlitePersistence(url) as third:
        with pytest.raises(WorkflowNotFoundError):
            await third.get_workflow(instance.id)


@pytest.mark.anyio
async def test_files_are_shared_but_distinct_files_are_not(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    async with SqlitePersistence(a) as pa, SqliteQueue(a) as qa, SqlitePersistence(b) as pb:
        assert pa.store is qa.store
        assert pa.store is not pb.store


@pytest.mark.anyio
@pytest.mark.parametrize("synchronous", ["full", "normal", "extra"])
async def test_synchronous_option_is_applied(tmp_path: Path, synchronous: str) -> None:
    levels = {"normal": 1, "full": 2, "extra": 3}
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    options = SqliteOptions(synchronous=synchronous)  # type: ignore[arg-type]
    async with SqlitePersistence(url, options) as persistence:

        def pragmas(conn: object) -> tuple[int, int, int, str]:
            run = conn.exec_driver_sql  # type: ignore[attr-defined]
            return (
                run("PRAGMA synchronous").scalar(),
                run("PRAGMA foreign_keys").scalar(),
                run("PRAGMA busy_timeout").scalar(),
                run("PRAGMA journal_mode").scalar(),
            )

        assert await persistence.store.write(pragmas) == (levels[synchronous], 1, 30000, "wal")


@pytest.mark.anyio
async def test_locked_database_is_a_provider_error_and_reads_go_on(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    url = f"sqlite:///{path}"
    instance = WorkflowInstance("flow", 1)
    async with SqlitePersistence(url, SqliteOptions(busy_timeout=0.3)) as persistence:
        await persistence.create_workflow(instance)
        # Another process (here: another connection) holds the write lock.
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            started = anyio.current_time()
            with pytest.raises(ProviderError, match="locked") as caught:
                await persistence.persist_workflow(instance)
            assert anyio.current_time() - started >= 0.2
            assert isinstance(caught.value.__cause__, Exception)
            # WAL: readers are not blocked by the writer.
            assert (await persistence.get_workflow(instance.id)).revision == 1
            other.execute("ROLLBACK")
        await persistence.persist_workflow(instance)
        assert instance.revision == 2


@pytest.mark.anyio
async def test_times_keep_microseconds_and_order_in_sql(db_url: str) -> None:
    base = utcnow()
    async with SqlitePersistence(db_url) as persistence:
        ids = []
        for offset in (3, 1, 2):
            instance = WorkflowInstance(
                "flow", 1, next_execution=base + timedelta(microseconds=offset)
            )
            await persistence.create_workflow(instance)
            ids.append((offset, instance.id))
        due = await persistence.get_runnable_instances(base + timedelta(microseconds=2))
        assert list(due) == [i for o, i in sorted(ids) if o <= 2]
        assert await persistence.next_execution_time() == base + timedelta(microseconds=1)


@pytest.mark.anyio
async def test_a_locked_database_fails_a_group_once_not_once_per_write(tmp_path: Path) -> None:
    path = tmp_path / "busy-group.db"
    instances = [WorkflowInstance("flow", 1) for _ in range(20)]
    async with SqlitePersistence(f"sqlite:///{path}", SqliteOptions(busy_timeout=0.3)) as p:
        for instance in instances:
            await p.create_workflow(instance)
        failures: list[BaseException] = []

        async def write(instance: WorkflowInstance) -> None:
            try:
                await p.persist_workflow(instance)
            except ProviderError as exc:
                failures.append(exc)

        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for instance in instances:
                    tg.start_soon(write, instance)
            elapsed = anyio.current_time() - started
            other.execute("ROLLBACK")
        assert len(failures) == len(instances)
        # A few groups at most, each waiting busy_timeout once (20 waits would take 6 s).
        assert elapsed < 3.0
        assert all(i.revision == 1 for i in instances)


@pytest.mark.anyio
async def test_a_damaged_document_is_a_provider_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    instance = WorkflowInstance("flow", 1)
    async with SqlitePersistence(f"sqlite:///{path}") as persistence:
        await persistence.create_workflow(instance)
        with contextlib.closing(sqlite3.connect(path)) as other, other:
            other.execute('UPDATE wfe_workflows SET document = \'{"not": "an instance"}\'')
        with pytest.raises(ProviderError, match="a stored WorkflowInstance cannot be read"):
            await persistence.get_workflow(instance.id)


def test_the_claim_walks_the_fifo_index(tmp_path: Path) -> None:
    """A long backlog must not make every dequeue collect and sort it."""
    from wfe_sqlite.queue import _CLAIM
    from wfe_sqlite.schema import MIGRATIONS

    with contextlib.closing(sqlite3.connect(tmp_path / "plan.db")) as conn:
        for migration in MIGRATIONS:
            for statement in migration.statements:
                conn.execute(statement)
        plan = " | ".join(
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN {_CLAIM}",
                {"queue": "workflow", "now": 1, "receipt": "r", "deadline": 2, "limit": 8},
            )
        )
    assert "ix_wfe_queue_fifo" in plan
    assert "TEMP B-TREE" not in plan


@pytest.mark.anyio
async def test_only_writes_that_must_survive_a_power_loss_wait_for_the_sync(db_url: str) -> None:
    def level(conn: object) -> int:
        value: int = conn.exec_driver_sql("PRAGMA synchronous").scalar()  # type: ignore[attr-defined]
        return value

    async with SqlitePersistence(db_url) as persistence:
        store = persistence.store
        assert await store.write(level, durable=False) == 1  # NORMAL: a claim, an ack, a lease
        assert await store.write(level) == 2  # FULL, as configured: a transition, an enqueue
        assert await store.write(level, durable=False) == 1
        # A group holding one durable write is synced as a whole.
        levels: list[int] = []

        async def write(durable: bool) -> None:
            levels.append(await store.write(level, durable=durable))

        async with anyio.create_task_group() as tg:
            tg.start_soon(write, False)
            await anyio.lowlevel.checkpoint()
            for durable in (False, True, False):
                tg.start_soon(write, durable)
        assert 2 in levels


def test_each_event_loop_has_its_own_stores() -> None:
    """A provider left open by one event loop never hands its connections (or its in-memory
    database) to the next loop in the same thread."""
    instance = WorkflowInstance("flow", 1)

    async def first() -> SqlitePersistence:
        persistence = SqlitePersistence("sqlite:///:memory:")
        await persistence.open()
        await persistence.create_workflow(instance)
        return persistence

    async def second() -> None:
        async with SqlitePersistence("sqlite:///:memory:") as persistence:
            with pytest.raises(WorkflowNotFoundError):
                await persistence.get_workflow(instance.id)
            await persistence.create_workflow(WorkflowInstance("flow", 1))

    leftover = anyio.run(first)
    try:
        anyio.run(second)
    finally:
        anyio.run(leftover.close)


@pytest.mark.anyio
async def test_concurrent_reads_share_groups_and_fail_alone(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads pending together run as a few groups; a read that fails (not found, or a
    database error) fails only its caller."""
    async with SqlitePersistence(db_url) as persistence:
        store = persistence.store
        instances = [WorkflowInstance("flow", 1, data={"i": i}) for i in range(40)]
        for instance in instances:
            await persistence.create_workflow(instance)
        groups: list[int] = []
        run_reads = store.reads.run_blocking

        def counting(batch: list[object]) -> None:
            groups.append(len(batch))
            run_reads(batch)  # type: ignore[arg-type]

        monkeypatch.setattr(store.reads, "run_blocking", counting)

        def broken(conn: object) -> None:
            raise sqlite3.OperationalError("disk on fire")

        outcomes: dict[str, object] = {}

        async def get(key: str, workflow_id: str) -> None:
            try:
                outcomes[key] = (await persistence.get_workflow(workflow_id)).data["i"]
            except WorkflowNotFoundError:
                outcomes[key] = "missing"

        async def fail(key: str) -> None:
            with pytest.raises(ProviderError, match="disk on fire"):
                await store.read(broken, "broken read")
            outcomes[key] = "failed"

        async with anyio.create_task_group() as tg:
            for index, instance in enumerate(instances):
                tg.start_soon(get, f"get-{index}", instance.id)
                if index % 10 == 5:
                    tg.start_soon(get, f"unknown-{index}", "no-such-workflow")
                    tg.start_soon(fail, f"broken-{index}")
        assert outcomes == {
            **{f"get-{i}": i for i in range(40)},
            **{f"unknown-{i}": "missing" for i in range(5, 40, 10)},
            **{f"broken-{i}": "failed" for i in range(5, 40, 10)},
        }
        assert sum(groups) == len(outcomes)
        assert len(groups) < len(outcomes) / 2, "concurrent reads were not grouped"


@pytest.mark.anyio
async def test_cancelled_readers_do_not_break_the_group(db_url: str) -> None:
    """Readers cancelled while queued or while their group runs (the one leading it too)
    leave the others' reads intact, and the store keeps working."""
    options = SqliteOptions(read_connections=1)
    async with SqlitePersistence(db_url, options) as persistence:
        instances = [WorkflowInstance("flow", 1, data={"i": i}) for i in range(30)]
        for instance in instances:
            await persistence.create_workflow(instance)
        results: dict[int, int] = {}

        async def get(index: int) -> None:
            results[index] = (await persistence.get_workflow(instances[index].id)).data["i"]

        async with anyio.create_task_group() as tg, anyio.create_task_group() as doomed:
            # The first leads the first group alone; the others queue behind it.
            for index in range(0, 30, 3):
                doomed.start_soon(get, index)
            for index in range(30):
                if index % 3:
                    tg.start_soon(get, index)
            await anyio.lowlevel.checkpoint()
            doomed.cancel_scope.cancel()
        assert {i: v for i, v in results.items() if i % 3} == {i: i for i in range(30) if i % 3}
        # Any cancelled read that still returned returned the right thing.
        assert all(results[i] == i for i in results)
        assert persistence.store.reads.queue == []
        assert persistence.store.reads.running == 0
        assert (await persistence.get_workflow(instances[0].id)).data["i"] == 0


@pytest.mark.anyio
async def test_reads_of_a_memory_database_fail_alone() -> None:
    async with SqlitePersistence("sqlite:///:memory:") as persistence:
        instance = WorkflowInstance("flow", 1, data={"i": 1})
        await persistence.create_workflow(instance)
        outcomes: list[object] = []

        async def get(workflow_id: str) -> None:
            try:
                outcomes.append((await persistence.get_workflow(workflow_id)).data["i"])
            except WorkflowNotFoundError:
                outcomes.append("missing")

        async with anyio.create_task_group() as tg:
            for workflow_id in (instance.id, "unknown", instance.id):
                tg.start_soon(get, workflow_id)
        assert sorted(map(str, outcomes)) == ["1", "1", "missing"]


@pytest.mark.anyio
async def test_a_read_cancelled_while_its_group_runs_is_abandoned(db_url: str) -> None:
    async with SqlitePersistence(db_url, SqliteOptions(read_connections=1)) as persistence:
        store = persistence.store
        first_running, release_first = threading.Event(), threading.Event()
        second_running, release_second = threading.Event(), threading.Event()
        ran: list[str] = []

        def step(
            name: str, running: threading.Event | None, release: threading.Event | None
        ) -> Callable[[object], str]:
            def fn(conn: object) -> str:
                if running is not None and release is not None:
                    running.set()
                    release.wait(10)
                ran.append(name)
                return name

            return fn

        results: dict[str, str] = {}
        doomed: list[anyio.CancelScope] = []

        async def read(name: str, fn: Callable[[object], str]) -> None:
            results[name] = await store.read(fn)

        async def doomed_read(name: str) -> None:
            with anyio.CancelScope() as scope:
                doomed.append(scope)
                await read(name, step(name, None, None))

        async with anyio.create_task_group() as tg:
            # The first group holds the only connection while the next one lines up.
            tg.start_soon(read, "first", step("first", first_running, release_first))
            await anyio.to_thread.run_sync(first_running.wait, 10)
            tg.start_soon(doomed_read, "leader")
            tg.start_soon(doomed_read, "member")
            tg.start_soon(read, "last", step("last", second_running, release_second))
            await anyio.lowlevel.checkpoint()
            release_first.set()
            # The second group (leader, member, last) is running: cancel two of its callers.
            await anyio.to_thread.run_sync(second_running.wait, 10)
            for scope in doomed:
                scope.cancel()
            # The member's wait ends at once; the leader's does not (it leads the group).
            await anyio.lowlevel.checkpoint()
            release_second.set()
        assert ran == ["first", "leader", "member", "last"]
        # The caller leading the group waited for it; the other cancelled one left.
        assert results == {"first": "first", "leader": "leader", "last": "last"}
        assert (store.reads.queue, store.reads.running) == ([], 0)


@pytest.mark.anyio
async def test_a_long_read_does_not_hold_up_the_reads_after_it(db_url: str) -> None:
    async with SqlitePersistence(db_url) as persistence:
        instance = WorkflowInstance("flow", 1)
        await persistence.create_workflow(instance)
        release = threading.Event()

        def long_read(conn: object) -> None:
            release.wait(10)

        async with anyio.create_task_group() as tg:
            tg.start_soon(persistence.store.read, long_read)
            await anyio.sleep(0.05)
            # Its group has run for a while: this read starts another group beside it.
            with anyio.fail_after(5):
                assert (await persistence.get_workflow(instance.id)).id == instance.id
            assert not release.is_set()
            release.set()


@pytest.mark.anyio
async def test_only_acquisitions_move_the_token_counter(db_url: str) -> None:
    async with SqliteLock(db_url) as lock:
        first = await lock.acquire("a", owner="me", ttl=0.2)
        assert first is not None
        # Refused attempts (held by another, or by the same owner) take no token.
        assert await lock.acquire("a", owner="other", ttl=60) is None
        assert await lock.acquire("a", owner="me", ttl=60) is None
        second = await lock.acquire("b", owner="other", ttl=60)
        assert second is not None
        assert second.token == first.token + 1
        # The expired lease's key is taken again, with the next token.
        third = await lock.acquire("a", owner="other", ttl=60, wait=2)
        assert third is not None
        assert third.token == second.token + 1
