"""Passes over an instance's live part (``PersistenceProvider.get_live_part``) store what
passes over the whole instance store: the memory store reads the active pointers only (its
default), or the whole instance (``fast=False``); the same definition, on the same manual
clock, must end stored alike in both, whatever paths the passes take (loops over many
passes, a saga's compensation, retries, the end of the workflow, a step reading history)."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings

from wfe_core import ExecutionResult, StepBody, StepContext, WorkflowBuilder
from wfe_core.memory import MemoryPersistence
from wfe_core.models import ErrorBehavior, WorkflowDefinition
from wfe_core.primitives import Recur
from wfe_core.serialization import to_primitive
from wfe_core.testing import ManualClock
from wfe_core.testing.definitions import Node, build_tree, definition_trees
from wfe_core.testing.harness import EngineHarness

_START = datetime(2026, 1, 1, tzinfo=UTC)
_HEX_ID = re.compile(r"[0-9a-f]{32}")


async def _stored(definition: WorkflowDefinition, *, whole: bool) -> tuple[str, list[str]]:
    """Run ``definition`` to its end over live parts (or whole instances) and return the
    stored instance and its errors as text, every random id replaced by its order."""
    harness = EngineHarness(clock=ManualClock(_START))
    harness.persistence = MemoryPersistence(fast=not whole)
    instance = await harness.run(definition)
    errors = await harness.persistence.get_errors(instance.id)
    text = json.dumps(to_primitive(instance), sort_keys=True)
    names: dict[str, str] = {}
    text = _HEX_ID.sub(lambda m: names.setdefault(m.group(), f"id{len(names)}"), text)
    messages = [e.message for e in errors]
    return text, messages


async def _same_either_way(definition: WorkflowDefinition) -> str:
    live = await _stored(definition, whole=False)
    whole = await _stored(definition, whole=True)
    assert live == whole
    return live[0]


def _log(label: str) -> Any:
    def step(ctx: StepContext) -> None:
        ctx.data.setdefault("log", []).append(label)

    return step


def _rounds(data: Any) -> int:
    return len([x for x in data.get("log", []) if x == "round"])


@pytest.mark.anyio
async def test_a_recur_of_many_rounds_then_a_step() -> None:
    definition = (
        WorkflowBuilder()
        .recur(
            timedelta(minutes=1), lambda data: _rounds(data) >= 12, lambda b: b.then(_log("round"))
        )
        .then(_log("after"))
        .build("recur")
    )
    text = await _same_either_way(definition)
    assert '"status": "complete"' in text


@pytest.mark.anyio
async def test_a_saga_compensating_after_passes_over_live_parts() -> None:
    """The failure comes after a sleep (a new pass, over a live part): compensating reads
    the saga's finished steps, and the workflow goes on after the saga."""
    definition = (
        WorkflowBuilder()
        .then(_log("before"))
        .saga(
            lambda b: (
                b.then(_log("a"))
                .compensate_with(_log("undo a"))
                .delay(timedelta(minutes=5))
                .then(_log("b"))
                .compensate_with(_log("undo b"))
                .delay(timedelta(minutes=5))
                .then(_fail)
            )
        )
        .then(_log("after"))
        .build("saga")
    )
    text = await _same_either_way(definition)
    assert "undo a" in text
    assert "undo b" in text


@pytest.mark.anyio
async def test_retries_and_a_top_level_compensation_failing_the_workflow() -> None:
    flaky = _Flaky()
    definition = (
        WorkflowBuilder()
        .then(_log("first"))
        .compensate_with(_log("undo first"))
        .delay(timedelta(minutes=1))
        .then(flaky)
        .on_error(ErrorBehavior.retry(timedelta(minutes=1), max_retries=2))
        .then(_fail)
        .on_error(ErrorBehavior.compensate())
        .build("retries")
    )
    for whole in (False, True):
        flaky.failures = 0
        text, errors = await _stored(definition, whole=whole)
        assert '"status": "failed"' in text
        assert len(errors) == 3


class _Reader(StepBody):
    """Reads the finished pointers of its workflow (``reads_history``)."""

    reads_history = True

    async def run(self, ctx: StepContext) -> ExecutionResult:
        finished = [p.step_name for p in ctx.workflow.pointers if not p.active]
        ctx.data["seen"] = len(finished)
        return ExecutionResult.next()


@pytest.mark.anyio
async def test_a_step_reading_history_sees_the_finished_pointers() -> None:
    definition = (
        WorkflowBuilder()
        .then(_log("one"))
        .delay(timedelta(minutes=1))
        .then(_log("two"))
        .delay(timedelta(minutes=1))
        .then(_Reader)
        .build("reader")
    )
    text = await _same_either_way(definition)
    assert '"seen": 4' in text


class _ChildCountingRecur(Recur):
    """A recur whose body is not the engine's own, reading its pointer's ``children``."""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        ctx.data.setdefault("children", []).append(len(ctx.pointer.children))
        return await super().run(ctx)


@pytest.mark.anyio
async def test_a_step_body_sees_all_its_children_over_live_parts() -> None:
    """A live part may hold only a container's last child ids (the memory store keeps the
    last one): a body that is not the engine's own still sees them all in ``ctx.pointer``."""
    definition = (
        WorkflowBuilder()
        .recur(
            timedelta(minutes=1), lambda data: _rounds(data) >= 6, lambda b: b.then(_log("round"))
        )
        .build("counting")
    )
    (recur,) = [step for step in definition.steps if step.body is Recur]
    recur.body = _ChildCountingRecur
    text = await _same_either_way(definition)
    counts = json.loads(text)["data"]["children"]
    assert counts == sorted(counts)
    assert counts[-1] >= 6


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(definition_trees())
def test_random_definitions_store_the_same_over_live_parts(tree: list[Node]) -> None:
    builder: WorkflowBuilder[Any] = WorkflowBuilder()
    build_tree(builder, tree, Counter())
    definition = builder.build("random")
    anyio.run(_same_either_way, definition)


def _fail(ctx: StepContext) -> None:
    raise RuntimeError("no")


class _Flaky:
    """Fails its first two runs."""

    def __init__(self) -> None:
        self.failures = 0
        self.__name__ = "flaky"

    def __call__(self, ctx: StepContext) -> None:
        if self.failures < 2:
            self.failures += 1
            raise RuntimeError(f"flaky {self.failures}")
