"""Scenarios: a sub-workflow step that is cancelled terminates its child workflow.

Internal: :class:`~wfe_core.testing.conformance.scenarios.WorkflowScenarios` inherits
:class:`CancelledChildScenarios`, so every provider that runs the scenarios runs these. A step
is cancelled by its cancel condition, by ``end_workflow`` on another branch, or by the
workflow failing on another branch; in each case the child it waited for must not run on
alone (workflow-core and Temporal terminate it too: the "terminate" parent close policy).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from wfe_core._step import StepBody
from wfe_core.builder import WorkflowBuilder
from wfe_core.models import LifecycleEventType, PointerStatus, WorkflowStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_core._results import ExecutionResult
    from wfe_core._step import StepContext
    from wfe_core.builder import WorkflowBuilder as Builder
    from wfe_core.models import WorkflowDefinition, WorkflowInstance
    from wfe_core.testing.conformance.scenarios import ScenarioHost

__all__ = ["CancelledChildScenarios", "Stoppable"]

_TIMEOUT = 30.0


@attrs.define
class Stoppable:
    """The parent's data: a key for its ``stop`` event, whether to stop, what ran."""

    key: str = attrs.Factory(lambda: uuid.uuid4().hex)
    stop: bool = False
    log: list[str] = attrs.Factory(list)


class _Broken(StepBody):
    async def run(self, ctx: StepContext) -> ExecutionResult:
        raise RuntimeError("the other branch broke")


def _unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _stop(ctx: StepContext) -> None:
    ctx.data.stop = True
    ctx.data.log.append("stopped")


class CancelledChildScenarios:
    """A cancelled sub-workflow step terminates its child, whatever cancelled it."""

    __test__ = False

    def _parent(
        self, child_id: str, other: Callable[[Builder[Stoppable]], Any], *, cancellable: bool
    ) -> WorkflowDefinition:
        """Two branches: the sub-workflow (with a cancel condition on ``data.stop`` when
        ``cancellable``) and one that waits for ``stop`` then goes on with ``other``."""

        def child_branch(b: Builder[Stoppable]) -> Any:
            step = b.sub_workflow(child_id)
            if cancellable:
                step.cancel_condition(lambda data: data.stop, proceed_after_cancel=True)
            return step

        return (
            WorkflowBuilder(Stoppable)
            .parallel(
                lambda p: p.branch(child_branch).branch(
                    lambda b: other(b.wait_for("stop", key=lambda data: data.key))
                )
            )
            .then(lambda ctx: ctx.data.log.append("after"))
            .build(_unique("parent-of-cancelled"))
        )

    async def _run_until_cancelled(
        self, host: ScenarioHost, parent: WorkflowDefinition, child_id: str
    ) -> tuple[WorkflowInstance, WorkflowInstance]:
        """Start ``parent``, wait until its child (``child_id``, waiting for ever) waits,
        publish ``stop``: the parent's and the child's final instances."""
        child = WorkflowBuilder().wait_for("never", key="k").build(child_id)
        host.register(child)
        host.register(parent)
        events = host.lifecycle_events()
        data = Stoppable()
        parent_id = await host.start_workflow(parent.id, data)
        started = None
        with anyio.fail_after(_TIMEOUT):
            async for event in events:
                if (
                    event.type == LifecycleEventType.WORKFLOW_STARTED
                    and event.definition_id == child.id
                ):
                    started = event.workflow_id
                    break
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
        assert started is not None
        child_id = started
        await self._until(host, child_id, lambda i: self._waits(i, "never"))
        await self._until(host, parent_id, lambda i: self._waits(i, "stop"))
        # The parent's step waits for the child's end (not only the child for its event).
        await self._until(host, parent_id, lambda i: self._waits(i, "wfe.workflow-finished"))
        await host.publish_event("stop", data.key)
        finished_parent = await host.wait_for_workflow(parent_id, _TIMEOUT)
        finished_child = await host.wait_for_workflow(child_id, _TIMEOUT)
        return finished_parent, finished_child

    @staticmethod
    def _waits(instance: WorkflowInstance, event_name: str) -> bool:
        return any(
            p.status == PointerStatus.WAITING_FOR_EVENT and p.event_name == event_name
            for p in instance.pointers
        )

    async def _until(
        self, host: ScenarioHost, workflow_id: str, predicate: Callable[[WorkflowInstance], bool]
    ) -> None:
        with anyio.fail_after(_TIMEOUT):
            # No lifecycle event marks these states, so the test looks (tests only).
            while not predicate(await host.get_workflow(workflow_id)):  # noqa: ASYNC110
                await anyio.sleep(0.02)

    def _child_was_cancelled(self, parent: WorkflowInstance, child: WorkflowInstance) -> None:
        assert child.status == WorkflowStatus.TERMINATED
        assert child.parent_workflow_id == parent.id
        assert all(not p.active for p in child.pointers)
        step = next(p for p in parent.pointers if p.event_name == "wfe.workflow-finished")
        assert step.status == PointerStatus.CANCELLED

    @pytest.mark.anyio
    async def test_cancel_condition_on_a_sub_workflow_terminates_the_child(
        self, host: ScenarioHost
    ) -> None:
        parent, child = await self._cancel_run(host, lambda b: b.then(_stop), cancellable=True)
        assert parent.status == WorkflowStatus.COMPLETE
        assert parent.data.log == ["stopped", "after"]
        self._child_was_cancelled(parent, child)

    @pytest.mark.anyio
    async def test_end_workflow_on_another_branch_terminates_the_child(
        self, host: ScenarioHost
    ) -> None:
        parent, child = await self._cancel_run(host, lambda b: b.end_workflow(), cancellable=False)
        assert parent.status == WorkflowStatus.COMPLETE
        assert parent.data.log == []
        self._child_was_cancelled(parent, child)

    @pytest.mark.anyio
    async def test_a_failure_on_another_branch_terminates_the_child(
        self, host: ScenarioHost
    ) -> None:
        parent, child = await self._cancel_run(host, lambda b: b.then(_Broken), cancellable=False)
        assert parent.status == WorkflowStatus.FAILED
        self._child_was_cancelled(parent, child)

    async def _cancel_run(
        self,
        host: ScenarioHost,
        other: Callable[[Builder[Stoppable]], Any],
        *,
        cancellable: bool,
    ) -> tuple[WorkflowInstance, WorkflowInstance]:
        child_id = _unique("child")
        parent = self._parent(child_id, other, cancellable=cancellable)
        return await self._run_until_cancelled(host, parent, child_id)
