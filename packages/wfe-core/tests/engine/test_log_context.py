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


def test_binding_a_workflow_leaves_out_the_step_of_the_code_around_it() -> None:
    """A pass started from inside a step (a child workflow's, run at once in the parent's
    task) logs as the child, not as the parent's step."""
    from wfe_core.log_context import bound

    with bound(workflow_id="parent", step_id=3, step_name="start child"):
        assert current()["step_name"] == "start child"
        with bound(workflow_id="child", definition_id="child-def"):
            assert current() == {
                "workflow_id": "child",
                "definition_id": "child-def",
                "step_id": None,
                "step_name": None,
            }
        with bound(step_name="renamed"):
            assert (current()["step_id"], current()["step_name"]) == (3, "renamed")
        assert current()["step_name"] == "start child"
    assert current() == dict.fromkeys(("workflow_id", "definition_id", "step_id", "step_name"))


def test_bound_refuses_unknown_fields_and_wrong_types() -> None:
    from wfe_core.log_context import bound

    with pytest.raises(TypeError, match="unknown log context fields: stepid"):
        bound(stepid=1)
    with pytest.raises(TypeError, match="step_id must be an int"):
        bound(step_id="1")


async def test_a_failing_step_logs_its_failure_as_that_step() -> None:
    def fail(ctx: StepContext) -> None:
        raise RuntimeError("broken")

    definition = WorkflowBuilder().start_with(fail).name("breaks").build("failing", 1)
    handler = _Collect()
    engine_logger = logging.getLogger("wfe_core.engine")
    engine_logger.addHandler(handler)
    level = engine_logger.level
    engine_logger.setLevel(logging.INFO)
    try:
        await EngineHarness().run(definition)
    finally:
        engine_logger.removeHandler(handler)
        engine_logger.setLevel(level)
    (failed,) = [r for r in handler.records if r.getMessage().startswith("step breaks failed")]
    assert (failed.step_name, failed.step_id) == ("breaks", definition.steps[0].id)  # type: ignore[attr-defined]
    assert current()["step_id"] is None
