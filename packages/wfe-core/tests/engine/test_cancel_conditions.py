"""Cancel conditions in the executor: what they cancel, when, and what a failing one does."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import StepContext, WorkflowBuilder
from wfe_core.models import PointerStatus, WorkflowStatus

if TYPE_CHECKING:
    from wfe_core.testing.harness import EngineHarness

pytestmark = pytest.mark.anyio


def log(label: str) -> Any:
    def step(ctx: StepContext) -> None:
        ctx.data.setdefault("log", []).append(label)

    return step


async def forever(ctx: StepContext) -> None:
    await anyio.sleep(30)
    ctx.data.setdefault("log", []).append("long finished")


async def test_a_running_step_is_cancelled_at_once(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .parallel(
            lambda p: p.branch(
                lambda b: (
                    b.start_with(forever)
                    .name("long")
                    .cancel_condition(lambda data: "stop" in data.get("log", []))
                    .then(log("never"))
                )
            ).branch(lambda b: b.start_with(log("stop")))
        )
        .then(log("after"))
        .build("cancel-running")
    )
    started = time.monotonic()
    instance = await engine.run(definition)
    assert time.monotonic() - started < 10
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["log"] == ["stop", "after"]
    (long,) = [p for p in instance.pointers if p.step_name == "long"]
    assert long.status == PointerStatus.CANCELLED


async def test_cancelling_a_container_cancels_what_runs_inside(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .parallel(
            lambda p: p.branch(
                lambda b: (
                    b.for_each(
                        lambda data: [1, 2, 3],
                        lambda x: x.wait_for("item", key=lambda data, ctx: str(ctx.item)),
                    )
                    .cancel_condition(
                        lambda data: data.get("done", False), proceed_after_cancel=True
                    )
                    .then(log("after the loop"))
                )
            ).branch(lambda b: b.start_with(lambda ctx: ctx.data.update(done=True)))
        )
        .build("cancel-container")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["log"] == ["after the loop"]
    waits = [p for p in instance.pointers if p.step_name == "WaitFor item"]
    assert waits
    assert {p.status for p in waits} == {PointerStatus.CANCELLED}
    assert not await engine.persistence.get_subscriptions("item", "1", as_of=datetime.now(UTC))


async def test_a_condition_that_raises_counts_as_false_and_is_logged(
    engine: EngineHarness, caplog: pytest.LogCaptureFixture
) -> None:
    definition = (
        WorkflowBuilder()
        .start_with(log("a"))
        .cancel_condition(lambda data: data["missing"])
        .then(log("b"))
        .build("cancel-raises")
    )
    with caplog.at_level(logging.WARNING, logger="wfe_core.engine"):
        instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["log"] == ["a", "b"]
    assert any("cancel condition of step 0 raised" in r.getMessage() for r in caplog.records)
