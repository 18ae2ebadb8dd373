"""A process killed between storing a subscription and queueing the events published before
it: the restarted host still delivers them (the write storing the subscription marked them
unprocessed, so the start-up sweep finds them). And a reopened event reaches the new
subscription only, never again a workflow that already had it."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.models import PointerStatus
from wfe_core.primitives import BEGINNING_OF_TIME
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from types import ModuleType

wfe_host = pytest.importorskip("wfe_host", reason="the gap test needs wfe-host")

CHILD_PATH = Path(__file__).with_name("_gap_child.py")


def _child_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wfe_sqlite_test_gap_child", CHILD_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spawn(url: str, log: Path) -> subprocess.Popen[bytes]:
    # Its output goes to a file: a pipe nobody reads could fill up and stall it.
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(CHILD_PATH), url], stdout=out, stderr=subprocess.STDOUT
        )


def _host(url: str) -> Any:
    return wfe_host.WorkflowHost(
        persistence=SqlitePersistence(url),
        lock=SqliteLock(url),
        queue=SqliteQueue(url),
        options=wfe_host.HostOptions(lease_seconds=1.0),
    )


@pytest.mark.anyio
async def test_an_event_published_before_a_subscription_survives_a_kill_in_between(
    db_url: str, tmp_path: Path
) -> None:
    child = _child_module()
    # 1. The approval is published while nothing waits for it: delivered to nobody, processed.
    async with _host(db_url) as host:
        host.register(child.gap_flow())
        event_id = await host.publish_event(child.EVENT_NAME, child.EVENT_KEY, {"by": "zoë"})
        with anyio.fail_after(10):
            while not (await host.persistence.get_event(event_id)).is_processed:  # noqa: ASYNC110
                await anyio.sleep(0.01)

    # 2. A host process starts the workflow and is killed right after its wait step's
    # subscription is stored, before it queues the approval for it.
    log = tmp_path / "child.log"
    process = _spawn(db_url, log)
    try:
        returncode = await anyio.to_thread.run_sync(lambda: process.wait(timeout=60))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert returncode == -signal.SIGKILL, log.read_text()

    # On disk: the workflow waits on its subscription, and the approval is unprocessed again.
    async with SqlitePersistence(db_url, share_connections=False) as persistence:
        page = await persistence.list_workflows(definition_id=child.DEFINITION)
        assert page.total == 1
        workflow = page.items[0]
        assert any(p.status == PointerStatus.WAITING_FOR_EVENT for p in workflow.pointers)
        assert [event_id] == list(
            await persistence.get_events(child.EVENT_NAME, child.EVENT_KEY, BEGINNING_OF_TIME)
        )
        assert not (await persistence.get_event(event_id)).is_processed

    # 3. A restarted host, with nothing queued for the event, delivers it once and finishes.
    async with _host(db_url) as restarted:
        restarted.register(child.gap_flow())
        done = await restarted.wait_for_workflow(workflow.id, timeout=30)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data.approved_by == "zoë"
        assert done.data.steps == ["after-approval"]
        # Delivered once: the wait took this event, and it ends processed.
        waited = [p for p in done.pointers if p.event_name == child.EVENT_NAME]
        assert [p.extensions.get("event_id") for p in waited] == [event_id]
        with anyio.fail_after(10):
            while not (await restarted.persistence.get_event(event_id)).is_processed:  # noqa: ASYNC110
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_reopened_event_is_not_delivered_again_to_a_workflow_that_had_it(
    db_url: str,
) -> None:
    # An event one workflow consumed is reopened when a second workflow's subscription
    # matches it: the second gets it, the first (its subscription closed by its delivery)
    # does not get it again.
    child = _child_module()
    runs: list[str] = []

    def count(ctx: Any) -> None:
        runs.append(ctx.workflow.id)

    counted = (
        WorkflowBuilder(child.Approval)
        .wait_for(child.EVENT_NAME, key=child.EVENT_KEY)
        .output(approved_by=lambda step: step.event_data["by"])
        .then(count)
        .build("counted-gap-flow", version=1)
    )
    async with _host(db_url) as host:
        host.register(counted)
        first = await host.start_workflow("counted-gap-flow", child.Approval())
        with anyio.fail_after(10):
            while not any(  # noqa: ASYNC110 - no lifecycle event marks a waiting step
                p.status == PointerStatus.WAITING_FOR_EVENT
                for p in (await host.get_workflow(first)).pointers
            ):
                await anyio.sleep(0.01)
        event_id = await host.publish_event(child.EVENT_NAME, child.EVENT_KEY, {"by": "ana"})
        done = await host.wait_for_workflow(first, timeout=30)
        assert done.status == WorkflowStatus.COMPLETE
        with anyio.fail_after(10):
            while not (await host.persistence.get_event(event_id)).is_processed:  # noqa: ASYNC110
                await anyio.sleep(0.01)

        second = await host.start_workflow("counted-gap-flow", child.Approval())
        later = await host.wait_for_workflow(second, timeout=30)
        assert later.status == WorkflowStatus.COMPLETE
        assert later.data.approved_by == "ana"
        # Let any second delivery of the reopened event happen before looking.
        with anyio.fail_after(10):
            while not (await host.persistence.get_event(event_id)).is_processed:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)
        assert sorted(runs) == sorted([first, second])
        again = await host.get_workflow(first)
        assert again.revision == done.revision
