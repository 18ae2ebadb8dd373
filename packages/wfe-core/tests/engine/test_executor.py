"""The executor on its own (memory persistence, no host): passes, concurrency, revisions,
and a property: any definition built from the primitives finishes with every step run the
expected number of times."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings

from wfe_core import ExecutionResult, StepContext, WorkflowBuilder
from wfe_core.errors import ConcurrencyError
from wfe_core.models import LifecycleEventType, PointerStatus, WorkflowStatus
from wfe_core.testing.definitions import Node, build_tree, definition_trees
from wfe_core.testing.harness import EngineHarness

pytestmark = pytest.mark.anyio


async def test_a_sequence_finishes_in_one_pass(engine: EngineHarness) -> None:
    definition = (
        WorkflowBuilder()
        .start_with(lambda ctx: ExecutionResult.next(output={"a": 1}))
        .then(lambda ctx: ctx.data.update(b=ctx.data["a"] + 1))
        .build("seq")
    )
    workflow_id = (await engine.start(definition)).id
    instance = await engine.persistence.get_workflow(workflow_id)
    await engine.executor.run_pass(instance, definition)
    assert instance.status == WorkflowStatus.COMPLETE
    stored = await engine.persistence.get_workflow(workflow_id)
    assert stored.data == {"a": 1, "b": 2}
    assert [p.status for p in stored.pointers] == [PointerStatus.COMPLETE] * 2
    assert stored.next_execution is None
    types = [e.type for e in engine.events]
    assert types.count(LifecycleEventType.STEP_STARTED) == 2
    assert types[-1] == LifecycleEventType.WORKFLOW_COMPLETED


async def test_max_parallel_steps_bounds_concurrency() -> None:
    """At most that many steps run at once; the others wait as pending pointers (not marked
    running, no attempt counted) until a running one ends."""
    engine = EngineHarness(max_parallel_steps=2)
    active = peak = marked = 0

    async def work(ctx: StepContext) -> None:
        nonlocal active, peak, marked
        active += 1
        peak = max(peak, active)
        # The branches' pointers (the for_each container's own counts as running too).
        running = [
            p for p in ctx.workflow.pointers if p.scope and p.status == PointerStatus.RUNNING
        ]
        marked = max(marked, len(running))
        await anyio.sleep(0.1)
        active -= 1

    definition = (
        WorkflowBuilder().for_each(lambda data: range(6), lambda b: b.start_with(work)).build("p")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert peak == 2
    assert marked == 2
    assert all(p.attempt == 1 for p in instance.pointers)


async def test_a_stale_pass_cannot_overwrite_newer_state(engine: EngineHarness) -> None:
    definition = WorkflowBuilder().start_with(lambda ctx: None).build("stale")
    workflow_id = (await engine.start(definition)).id
    fresh = await engine.persistence.get_workflow(workflow_id)
    stale = await engine.persistence.get_workflow(workflow_id)
    await engine.executor.run_pass(fresh, definition)
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - may come in a group
        await engine.executor.run_pass(stale, definition)
    assert _has(caught.value, ConcurrencyError)
    assert (await engine.persistence.get_workflow(workflow_id)).status == WorkflowStatus.COMPLETE


def _has(error: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return any(_has(e, kind) for e in error.exceptions)
    return isinstance(error, kind)


async def test_sleep_sets_next_execution(engine: EngineHarness) -> None:
    definition = WorkflowBuilder().delay(timedelta(hours=1)).build("sleepy")
    workflow_id = (await engine.start(definition)).id
    instance = await engine.persistence.get_workflow(workflow_id)
    started = time.time()
    await engine.executor.run_pass(instance, definition)
    assert instance.status == WorkflowStatus.RUNNABLE
    assert instance.next_execution is not None
    assert instance.next_execution.timestamp() - started == pytest.approx(3600, abs=5)
    assert instance.pointers[0].status == PointerStatus.SLEEPING


async def test_waiting_step_creates_a_subscription(engine: EngineHarness) -> None:
    definition = WorkflowBuilder().wait_for("paid", key=lambda d: d["order"]).build("w")
    instance = await engine.run(definition, {"order": 9})
    assert instance.status == WorkflowStatus.RUNNABLE
    assert instance.next_execution is None  # only an event can wake it
    [subscription] = engine.subscriptions
    assert (subscription.event_name, subscription.event_key) == ("paid", "9")
    assert instance.pointers[0].status == PointerStatus.WAITING_FOR_EVENT


async def test_step_changes_to_data_are_kept_when_the_step_fails_later(
    engine: EngineHarness,
) -> None:
    def fail(ctx: StepContext) -> None:
        raise RuntimeError("no")

    definition = (
        WorkflowBuilder().start_with(lambda ctx: ctx.data.update(x=1)).then(fail).build("keep")
    )
    instance = await engine.run(definition)
    assert instance.status == WorkflowStatus.FAILED
    assert instance.data == {"x": 1}
    errors = await engine.persistence.get_errors(instance.id)
    assert [e.message for e in errors] == ["RuntimeError: no"]


# -- property: random definitions ----------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(definition_trees())
def test_random_definitions_finish_with_every_step_accounted_for(tree: list[Node]) -> None:
    expected: Counter[str] = Counter()
    builder: WorkflowBuilder[Any] = WorkflowBuilder()
    build_tree(builder, tree, expected)
    definition = builder.build("random")

    async def main() -> Any:
        return await EngineHarness().run(definition)

    instance = anyio.run(main)
    assert instance.status == WorkflowStatus.COMPLETE
    assert Counter(instance.data.get("log", [])) == +expected
    assert all(not p.active for p in instance.pointers)
    assert {p.status for p in instance.pointers} <= {PointerStatus.COMPLETE}


class _WriteAfterAWait(EngineHarness):
    """A harness whose writes wait a moment before they are made (the host renews a lapsing
    lease before a write), recording after each what the stored data holds and which steps
    are stored complete."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[list[str], list[str]]] = []

    async def persist(self, instance: Any, **kwargs: Any) -> None:
        await anyio.sleep(0.002)
        await super().persist(instance, **kwargs)
        stored = await self.persistence.get_workflow(instance.id)
        done = sorted(stored.data["done"])
        complete = sorted(
            p.step_name
            for p in stored.pointers
            if p.status == PointerStatus.COMPLETE and (p.step_name or "").startswith("s_")
        )
        self.written.append((done, complete))


def _counted(name: str, pause: float) -> Any:
    async def run(ctx: StepContext) -> None:
        if pause:
            await anyio.sleep(pause)
        ctx.workflow.data["done"].append(name)  # in place, as the step returns

    run.__name__ = name
    return run


@pytest.mark.parametrize("pause", [0.001 * i for i in range(10)])
async def test_a_write_stores_a_steps_change_to_the_data_only_with_its_result(
    pause: float,
) -> None:
    # A branch's body changes the data in place and returns while the other branch's write
    # waits: that write must store the result with the change (or neither), else a crash
    # after it runs the step again and its change is applied twice.
    definition = (
        WorkflowBuilder(dict)
        .start_with(_counted("s_start", 0))
        .parallel(
            lambda p: p.branch(
                lambda b: (
                    b.start_with(_counted("s_l1", 0))
                    .delay(lambda data: timedelta(seconds=0.002))
                    .then(_counted("s_l2", 0))
                    .delay(lambda data: timedelta(seconds=0.002))
                    .then(_counted("s_l3", 0))
                )
            ).branch(lambda b: b.start_with(_counted("s_r", pause)))
        )
        .then(_counted("s_end", 0))
        .build("data-with-results", 1)
    )
    engine = _WriteAfterAWait()
    instance = await engine.run(definition, {"done": []})
    assert sorted(instance.data["done"]) == sorted(
        ["s_start", "s_l1", "s_l2", "s_l3", "s_r", "s_end"]
    )
    for done, complete in engine.written:
        assert done == complete
