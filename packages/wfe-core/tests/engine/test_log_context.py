"""Records logged while a pass or a step runs name the workflow and the step
(``wfe_core.log_context``), also for steps running in parallel branches."""

from __future__ import annotations

import logging

import pytest

from wfe_core import StepContext, WorkflowBuilder
from wfe_core.log_context import LogContextFilter, current
from wfe_core.testing.harness import EngineHarness

pytestmark = pytest.mark.anyio

user_logger = logging.getLogger("tests.user_step")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(LogContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_records_of_steps_carry_the_workflow_and_the_step() -> None:
    def log(ctx: StepContext) -> None:
        user_logger.warning("in %s", ctx.step.display_name)

    definition = (
        WorkflowBuilder()
        .start_with(log)
        .name("first")
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(log).name("left")).branch(
                lambda b: b.start_with(log).name("right")
            )
        )
        .build("logging", 1)
    )
    handler = _Collect()
    user_logger.addHandler(handler)
    try:
        instance = await EngineHarness().run(definition)
    finally:
        user_logger.removeHandler(handler)

    seen = {
        r.getMessage(): (r.workflow_id, r.definition_id, r.step_name)  # type: ignore[attr-defined]
        for r in handler.records
    }
    assert seen == {
        f"in {name}": (instance.id, "logging", name) for name in ("first", "left", "right")
    }
    steps = {r.step_name: r.step_id for r in handler.records}  # type: ignore[attr-defined]
    assert steps["first"] == definition.steps[0].id
    assert current()["workflow_id"] is None  # nothing leaks out of the pass
