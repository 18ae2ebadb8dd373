"""What a cancel condition and a saga's retry leave in the store carries on in the next
host: one host stops halfway, another on the same SQLite file finishes the workflow."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from wfe_core import ErrorBehavior, StepContext, WorkflowBuilder
from wfe_core.models import PointerStatus, WorkflowInstance, WorkflowStatus
from wfe_sqlite import SqliteLock, SqlitePersistence, SqliteQueue

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

wfe_host = pytest.importorskip("wfe_host", reason="the restart tests need wfe-host")
pytestmark = pytest.mark.anyio


@attrs.define
class Flow:
    key: str = "k"
    go: Any = None
    log: list[str] = attrs.Factory(list)
    tries: int = 0


def log(label: str) -> Callable[[StepContext], None]:
    def step(ctx: StepContext) -> None:
        ctx.data.log.append(label)

    return step


def _host(url: str) -> Any:
    return wfe_host.WorkflowHost(SqlitePersistence(url), SqliteLock(url), SqliteQueue(url))


async def _until(host: Any, workflow_id: str, holds: Callable[[WorkflowInstance], bool]) -> None:
    with anyio.fail_after(30):
        # No lifecycle event marks these states, so the test looks.
        while not holds(await host.get_workflow(workflow_id)):  # noqa: ASYNC110
            await anyio.sleep(0.02)


def _waiting(name: str) -> Callable[[WorkflowInstance], bool]:
    return lambda instance: any(
        p.step_name == name and p.status == PointerStatus.WAITING_FOR_EVENT
        for p in instance.pointers
    )


async def test_a_cancelled_step_stays_cancelled_in_the_next_host(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wfe.db"
    definition = (
        WorkflowBuilder(Flow)
        .parallel(
            lambda p: p.branch(
                lambda b: b.wait_for("go", key=lambda d: d.key).output(go=lambda s: s.event_data)
            ).branch(
                lambda b: (
                    b.wait_for("never", key=lambda d: d.key)
                    .name("cancelled wait")
                    .cancel_condition(lambda d: d.go is not None)
                    .then(log("never after the wait"))
                )
            )
        )
        .wait_for("finish", key=lambda d: d.key)
        .then(log("tail"))
        .build("cancel-restart")
    )
    async with _host(url) as first:
        first.register(definition)
        workflow_id = await first.start_workflow(definition.id, Flow())
        await _until(first, workflow_id, _waiting("cancelled wait"))
        await first.publish_event("go", "k", "yes")
        await _until(first, workflow_id, _waiting("WaitFor finish"))

    async with _host(url) as second:
        second.register(definition)
        stored = await second.get_workflow(workflow_id)
        (cancelled,) = [p for p in stored.pointers if p.step_name == "cancelled wait"]
        assert (cancelled.status, cancelled.active) == (PointerStatus.CANCELLED, False)
        await second.publish_event("never", "k")  # its subscription was closed
        await second.publish_event("finish", "k")
        instance = await second.wait_for_workflow(workflow_id, timeout=30)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.log == ["tail"]
    (cancelled,) = [p for p in instance.pointers if p.step_name == "cancelled wait"]
    assert cancelled.status == PointerStatus.CANCELLED


async def test_a_saga_waiting_to_retry_runs_again_in_the_next_host(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/wfe.db"

    def flaky(ctx: StepContext) -> None:
        ctx.data.tries += 1
        ctx.data.log.append(f"try {ctx.data.tries}")
        if ctx.data.tries < 2:
            raise RuntimeError("first try fails")

    definition = (
        WorkflowBuilder(Flow)
        .saga(lambda s: s.start_with(log("book")).compensate_with(log("unbook")).then(flaky))
        .on_error(ErrorBehavior.retry(interval=timedelta(milliseconds=300), max_retries=1))
        .then(log("tail"))
        .build("saga-restart")
    )
    async with _host(url) as first:
        first.register(definition)
        workflow_id = await first.start_workflow(definition.id, Flow())
        await _until(
            first,
            workflow_id,
            lambda i: any(
                p.step_name == "Saga" and p.status == PointerStatus.SLEEPING for p in i.pointers
            ),
        )

    async with SqlitePersistence(url) as store:
        stored = await store.get_workflow(workflow_id)
    assert stored.data["log"] == ["book", "try 1", "unbook"]
    (saga,) = [p for p in stored.pointers if p.step_name == "Saga"]
    assert saga.status == PointerStatus.SLEEPING
    assert saga.persistence_data is None  # its next run starts its steps afresh

    async with _host(url) as second:
        second.register(definition)
        instance = await second.wait_for_workflow(workflow_id, timeout=30)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.log == ["book", "try 1", "unbook", "book", "try 2", "tail"]
