"""Fencing end to end on one SQLite file: a pass that lost its lease never writes over the
work of the host that took the instance over."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus
from wfe_core.providers import QueueName

if TYPE_CHECKING:
    from types import ModuleType

wfe_host = pytest.importorskip("wfe_host", reason="the end-to-end tests need wfe-host")

CHILD_PATH = Path(__file__).with_name("_child.py")

pytestmark = pytest.mark.anyio


def _child_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wfe_sqlite_test_child", CHILD_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _until(condition: Any, limit: float = 30.0) -> None:
    with anyio.fail_after(limit):
        while True:
            if condition():
                return
            await anyio.sleep(0.02)


def _spawn_finisher(url: str, workflow_id: str, side_effects: Path) -> subprocess.Popen[str]:
    """A host in another process that runs until ``workflow_id`` finished."""
    return subprocess.Popen(
        [sys.executable, str(CHILD_PATH), "finish-one", url, workflow_id, str(side_effects)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lease_warnings(records: list[logging.LogRecord], workflow_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in records
        if r.levelno >= logging.WARNING and getattr(r, "workflow_id", None) == workflow_id
    ]


@attrs.define
class Log:
    log: list[str] = attrs.Factory(list)


async def test_a_paused_pass_cannot_overwrite_the_work_of_the_host_that_took_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Host A's pass is paused in a step (an event it waits for) while its lease lapses on
    the lock's side, the way a suspended machine's lease does (its monotonic clock stood
    still, so A cannot tell). Host B takes the instance over and completes the step and the
    workflow. When A resumes, the store refuses A's write (an older fencing token): A stops
    with one warning, writes nothing, and the history holds each transition once."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    paused = anyio.Event()
    resume = anyio.Event()
    hosts: dict[str, Any] = {}

    async def work(ctx: StepContext) -> None:
        name = "A" if ctx.host is hosts["A"] else "B"
        if name == "A":
            paused.set()
            await resume.wait()
        ctx.data.log.append(f"work by {name}")

    async def after(ctx: StepContext) -> None:
        ctx.data.log.append("after")

    definition = WorkflowBuilder(Log).start_with(work).then(after).build("fenced")
    # Long leases: A's own clock never sees its lease run out during the test. A has a queue
    # of its own, so what is queued for B reaches B.
    host_a = wfe_host.WorkflowHost.from_settings(
        {"persistence": url, "queue": "memory", "host": {"lease_seconds": 300}}
    )
    host_b = wfe_host.WorkflowHost.from_settings({"persistence": url})
    hosts["A"] = host_a
    caplog.set_level(logging.INFO)
    async with host_a, host_b:
        host_a.register(definition)
        host_b.register(definition)
        workflow_id = await host_a.start_workflow("fenced", data=Log())
        with anyio.fail_after(30):
            await paused.wait()
        # A's lease lapses on the lock's side (as after a pause of its process or machine).
        with contextlib.closing(sqlite3.connect(tmp_path / "wfe.db")) as conn, conn:
            (a_token,) = conn.execute(
                "SELECT token FROM wfe_locks WHERE key = ?", (workflow_id,)
            ).fetchone()
            conn.execute("UPDATE wfe_locks SET expires_at = 0 WHERE key = ?", (workflow_id,))
        await host_b.queue.enqueue(QueueName.WORKFLOW, workflow_id)
        finished = await host_b.wait_for_workflow(workflow_id, timeout=30)
        assert finished.status == WorkflowStatus.COMPLETE
        assert finished.data.log == ["work by B", "after"]

        caplog.clear()
        resume.set()
        await _until(lambda: workflow_id not in host_a.passes.running)

    stored = await _stored(url, workflow_id)
    # A's write was refused: nothing of it is stored, and each step's transition is there once.
    assert stored.revision == finished.revision
    assert stored.data["log"] == ["work by B", "after"]
    assert [p.step_id for p in stored.pointers] == [0, 1]
    with contextlib.closing(sqlite3.connect(tmp_path / "wfe.db")) as conn:
        (fence,) = conn.execute(
            "SELECT fence FROM wfe_workflows WHERE id = ?", (workflow_id,)
        ).fetchone()
    assert fence > a_token
    # One warning, no traceback, no error.
    warnings = _lease_warnings(caplog.records, workflow_id)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "newer lease" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _stored(url: str, workflow_id: str) -> Any:
    from wfe_sqlite import SqlitePersistence

    async with SqlitePersistence(url) as persistence:
        return await persistence.get_workflow(workflow_id)


async def test_a_step_that_blocks_the_loop_past_its_lease_does_not_write_late(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A step that blocks the event loop (no await: CPU-bound code) for longer than the
    lease starves the renewal. A second host, in another process on the same file, takes
    the instance over and completes it. When the loop runs again, the blocked pass's write
    is refused: the workflow completes once, with the second host's results only, and the
    blocked host goes on working."""
    child_module = _child_module()
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    side_effects = tmp_path / "side-effects.txt"
    definition = child_module.blocking_flow(str(side_effects), deadline=60.0)
    host = wfe_host.WorkflowHost.from_settings(
        {"persistence": url, "queue": "memory", "host": {"lease_seconds": 1.0}}
    )
    caplog.set_level(logging.INFO)
    child: subprocess.Popen[str] | None = None
    try:
        async with host:
            host.register(definition)
            workflow_id = await host.start_workflow("blocking-flow")
            # Spawned before this host's pass runs its step, which blocks the loop until
            # the child has run that step too.
            child = _spawn_finisher(url, workflow_id, side_effects)
            spawned = child
            out, err = await anyio.to_thread.run_sync(lambda: spawned.communicate(timeout=90))
            assert child.returncode == 0, err
            reports = [json.loads(line) for line in out.splitlines()]
            assert reports[-1]["status"] == "complete", reports
            other = str(reports[-1]["pid"])
            await _until(lambda: workflow_id not in host.passes.running)
            finished = await host.wait_for_workflow(workflow_id, timeout=30)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
    assert finished.status == WorkflowStatus.COMPLETE
    # The blocked pass's result was not stored: the data holds the other host's steps only.
    assert finished.data.log == [f"work:{other}", f"after:{other}"]
    assert [p.step_id for p in finished.pointers] == [0, 1]
    runs = [line.split() for line in side_effects.read_text().splitlines()]
    me = str(os.getpid())
    assert runs == [[me, "work"], [other, "work"], [other, "after"], [other, "done"]]
    # The blocked pass took the lapsed lease again (the other host was gone), and its write,
    # from a copy older than the other host's, was refused.
    assert any("took a lapsed lease again" in r.getMessage() for r in caplog.records)
    warnings = _lease_warnings(caplog.records, workflow_id)
    assert [r.getMessage() for r in warnings] == ["stale pass dropped"]


async def test_a_last_write_under_a_lapsed_lease_is_refused_and_the_step_runs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock and the persistence share the file, so a pass's last write gives its lease
    back in the same transaction, and is stored only while the lease is current. A lease
    that lapsed on the lock's side while the step ran (nobody took it, so the fence alone
    would let the write through) refuses that write: nothing of it is stored, the host says
    so once, and the instance runs again, its step with it."""
    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    paused = anyio.Event()
    resume = anyio.Event()
    runs: list[int] = []

    async def work(ctx: StepContext) -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            paused.set()
            await resume.wait()
        ctx.data.log.append(f"run {len(runs)}")

    definition = WorkflowBuilder(Log).start_with(work).build("last-write")
    host = wfe_host.WorkflowHost.from_settings({"persistence": url, "host": {"lease_seconds": 300}})
    caplog.set_level(logging.INFO)
    async with host:
        host.register(definition)
        workflow_id = await host.start_workflow("last-write", data=Log())
        with anyio.fail_after(30):
            await paused.wait()
        with contextlib.closing(sqlite3.connect(tmp_path / "wfe.db")) as conn, conn:
            conn.execute("UPDATE wfe_locks SET expires_at = 0 WHERE key = ?", (workflow_id,))
        resume.set()
        finished = await host.wait_for_workflow(workflow_id, timeout=30)
    assert finished.status == WorkflowStatus.COMPLETE
    assert runs == [1, 2]
    assert finished.data.log == ["run 2"]
    warnings = _lease_warnings(caplog.records, workflow_id)
    assert [r.getMessage().split(";")[0] for r in warnings] == ["lost the lease of a running pass"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with contextlib.closing(sqlite3.connect(tmp_path / "wfe.db")) as conn:
        assert conn.execute("SELECT count(*) FROM wfe_locks").fetchone() == (0,)


async def test_a_new_workflow_whose_lease_is_held_is_created_and_runs_once_it_is_free(
    tmp_path: Path,
) -> None:
    """A new workflow's lease is taken by the write creating it; when another holds its key
    (an id the caller chose), nothing is stored that way and the workflow is created as
    usual, then runs once the key is free."""
    from wfe_sqlite import SqliteLock

    url = f"sqlite:///{tmp_path / 'wfe.db'}"
    ran = anyio.Event()

    async def work(ctx: StepContext) -> None:
        ran.set()

    definition = WorkflowBuilder(Log).start_with(work).build("held-start")
    host = wfe_host.WorkflowHost.from_settings({"persistence": url})
    async with host, SqliteLock(url, share_connections=False) as other:
        host.register(definition)
        held = await other.acquire("chosen-id", owner="someone else", ttl=300)
        assert held is not None
        workflow_id = await host.start_workflow("held-start", data=Log(), workflow_id="chosen-id")
        assert workflow_id == "chosen-id"
        assert (await host.get_workflow(workflow_id)).status == WorkflowStatus.RUNNABLE
        assert not ran.is_set()
        await other.release(held)
        finished = await host.wait_for_workflow(workflow_id, timeout=30)
    assert finished.status == WorkflowStatus.COMPLETE
