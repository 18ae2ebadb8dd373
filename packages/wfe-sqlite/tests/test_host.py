"""End to end: a WorkflowHost configured by settings to use SQLite, and a host process
killed mid-run whose workflows another host on the same file finishes."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from types import ModuleType

wfe_host = pytest.importorskip("wfe_host", reason="the end-to-end tests need wfe-host")

CHILD_PATH = Path(__file__).with_name("_child.py")


def _child_module() -> ModuleType:
    # The child script also defines the crash test's workflow; load it by path (the tests
    # directory is not a package).
    spec = importlib.util.spec_from_file_location("wfe_sqlite_test_child", CHILD_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@attrs.define
class Order:
    items: list[str] = attrs.Factory(list)
    total: int = 0
    steps: list[str] = attrs.Factory(list)


def validate(ctx: StepContext) -> None:
    ctx.data.steps.append("validate")


async def price(ctx: StepContext) -> None:
    ctx.data.total = 10 * len(ctx.data.items)
    ctx.data.steps.append("price")


def ship(ctx: StepContext) -> None:
    ctx.data.steps.append("ship")


@pytest.mark.anyio
async def test_host_from_settings_runs_a_three_step_workflow(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wfe.db"
    definition = WorkflowBuilder(Order).start_with(validate).then(price).then(ship).build("order")
    async with wfe_host.WorkflowHost.from_settings({"persistence": url}) as host:
        # Persistence, lock and queue all come from the SQLite plugin, on the same file.
        assert isinstance(host.persistence, SqlitePersistence)
        assert isinstance(host.lock, SqliteLock)
        assert isinstance(host.queue, SqliteQueue)
        host.register(definition)
        workflow_id = await host.start_workflow("order", data=Order(items=["a", "b"]))
        finished = await host.wait_for_workflow(workflow_id, timeout=30)
        assert finished.status == WorkflowStatus.COMPLETE
        assert finished.data.steps == ["validate", "price", "ship"]
        assert finished.data.total == 20
    # It is on disk: a plain provider on the same file reads it back.
    async with SqlitePersistence(url) as persistence:
        stored = await persistence.get_workflow(workflow_id)
        assert stored.status == WorkflowStatus.COMPLETE
        assert stored.data["steps"] == ["validate", "price", "ship"]
        assert stored.complete_time is not None


def _spawn_host(url: str, side_effects: Path, log: Path) -> subprocess.Popen[bytes]:
    # Its output goes to a file: a pipe nobody reads could fill up and stall it.
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(CHILD_PATH), "host", url, str(side_effects)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _spawn_starter(url: str, side_effects: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD_PATH), "start", url, str(side_effects), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.anyio
async def test_killed_host_workflows_are_finished_by_a_new_host(tmp_path: Path) -> None:
    child_module = _child_module()
    url = f"sqlite:///{tmp_path}/wfe.db"
    side_effects = tmp_path / "side-effects.txt"
    settings = child_module.host_settings(url)
    definition = child_module.crash_flow(str(side_effects))
    steps: tuple[str, ...] = child_module.STEPS
    count = 12

    # Start the workflows from a host that runs no workers: the child runs them.
    starter = wfe_host.WorkflowHost.from_settings({**settings, "host": {"run_workers": False}})
    async with starter:
        starter.register(definition)
        ids = [await starter.start_workflow("crash-flow") for _ in range(count)]

    child_log = tmp_path / "child.log"
    child = _spawn_host(url, side_effects, child_log)
    try:
        # Kill it in the middle: once it has run a good part of the steps, but not all.
        with anyio.fail_after(60):
            while _line_count(side_effects) < count * 2:
                assert child.poll() is None, child_log.read_text()
                await anyio.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        await anyio.to_thread.run_sync(child.wait)
    assert child.returncode == -signal.SIGKILL
    with contextlib.closing(sqlite3.connect(tmp_path / "wfe.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    ran_in_child = _line_count(side_effects)
    assert ran_in_child < count * len(steps), "the child finished everything before the kill"

    async with wfe_host.WorkflowHost.from_settings(settings) as host:
        host.register(definition)
        finished = [await host.wait_for_workflow(i, timeout=60) for i in ids]

    for instance in finished:
        assert instance.status == WorkflowStatus.COMPLETE, instance
        # Each transition applied once: the data saw each step once, in order.
        assert instance.data.log == list(steps)
        assert instance.data.count == len(steps)
        assert [p.step_id for p in instance.pointers] == list(range(len(steps)))
    # Steps run at least once: every step ran, some of them in the killed process; a step
    # may have run again only where the kill interrupted it.
    runs: list[tuple[str, ...]] = [
        tuple(line.split()) for line in side_effects.read_text().splitlines()
    ]
    pids = {pid for pid, *_ in runs}
    assert len(pids) == 2, "both the killed host and the new one ran steps"
    per_step = Counter((workflow, step) for _, workflow, step, _ in runs)
    assert set(per_step) == {(i, s) for i in ids for s in steps}
    repeated = [key for key, n in per_step.items() if n > 1]
    assert len(repeated) <= count, f"more steps re-ran than the kill could interrupt: {repeated}"


@pytest.mark.anyio
async def test_workflows_started_by_a_host_that_is_killed_then_are_finished_by_another(
    tmp_path: Path,
) -> None:
    """A host with workers creates each new instance with its first pass's first write: once
    ``start_workflow`` returned, the instance is stored (its first step running), and a
    kill right after loses none of them."""
    child_module = _child_module()
    url = f"sqlite:///{tmp_path}/wfe.db"
    side_effects = tmp_path / "side-effects.txt"
    count = 5
    child = _spawn_starter(url, side_effects, count)
    assert child.stdout is not None
    stdout = child.stdout

    def read_ids() -> list[str]:
        return [json.loads(stdout.readline())["started"] for _ in range(count)]

    try:
        with anyio.fail_after(60):
            ids = await anyio.to_thread.run_sync(read_ids)
        # At once: the steps (0.1 s each) of the last ones cannot have ended yet.
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        await anyio.to_thread.run_sync(child.wait)
        stdout.close()
    assert child.returncode == -signal.SIGKILL
    steps: tuple[str, ...] = child_module.STEPS
    assert _line_count(side_effects) < count * len(steps)

    settings = child_module.host_settings(url)
    async with wfe_host.WorkflowHost.from_settings(settings) as host:
        host.register(child_module.crash_flow(str(side_effects)))
        finished = [await host.wait_for_workflow(i, timeout=60) for i in ids]
    for instance in finished:
        assert instance.status == WorkflowStatus.COMPLETE, instance
        assert instance.data.log == list(steps)
        assert [p.step_id for p in instance.pointers] == list(range(len(steps)))


def test_options_from_settings_reach_the_provider(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wfe.db"
    host = wfe_host.WorkflowHost.from_settings(
        {"persistence": {"url": url, "options": {"synchronous": "normal", "busy_timeout": 5}}}
    )
    assert isinstance(host.persistence, SqlitePersistence)
    options = host.persistence.target.options
    assert (options.synchronous, options.busy_timeout) == ("normal", 5.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"synchronous": "off"}, "persistence.options.synchronous"),
        (
            {"busy_timeout": -1},
            "persistence.options.busy_timeout: must be a finite number of seconds > 0",
        ),
        ({"colour": "blue"}, "persistence.options.colour"),
    ],
)
def test_bad_options_in_settings_are_configuration_errors(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    from wfe_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        wfe_host.WorkflowHost.from_settings(
            {"persistence": {"url": f"sqlite:///{tmp_path}/wfe.db", "options": options}}
        )
