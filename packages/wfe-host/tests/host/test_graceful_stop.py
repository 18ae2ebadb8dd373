"""Leaving ``async with WorkflowHost()`` stops gracefully: workflow-core's StopAsyncScenario
(a step running when the stop is asked for finishes, and its result is stored), the grace
period, and the leases released on the way out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.errors import ProviderNotFoundError
from wfe_core.memory import MemoryPersistence
from wfe_core.models import PointerStatus
from wfe_host import HostOptions, WorkflowHost

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from wfe_core import StepContext

pytestmark = pytest.mark.anyio


@attrs.define
class Slow:
    """A first step that takes ``seconds``, and a second one counting its runs."""

    seconds: float
    started: anyio.Event = attrs.field(factory=anyio.Event)
    first: int = 0
    finished_first: int = 0
    second: int = 0

    async def slow(self, ctx: StepContext) -> None:
        self.first += 1
        self.started.set()
        await anyio.sleep(self.seconds)
        self.finished_first += 1

    async def then(self, ctx: StepContext) -> None:
        self.second += 1

    def definition(self) -> object:
        return (
            WorkflowBuilder(dict)
            .start_with(self.slow)
            .name("slow")
            .then(self.then)
            .name("then")
            .build("stop-async")
        )


def _memory(persistence: MemoryPersistence) -> Callable[[HostOptions], WorkflowHost]:
    return lambda options: WorkflowHost(persistence=persistence, options=options)


def _sqlite(path: Path) -> Callable[[HostOptions], WorkflowHost]:
    def make(options: HostOptions) -> WorkflowHost:
        try:
            return WorkflowHost.from_settings(
                {"persistence": f"sqlite:///{path}/wfe.db", "host": attrs.asdict(options)}
            )
        except ProviderNotFoundError:
            pytest.skip("wfe-sqlite is not installed")

    return make


@pytest.fixture(params=["memory", "sqlite"])
def make_host(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[HostOptions], WorkflowHost]:
    if request.param == "memory":
        return _memory(MemoryPersistence())
    return _sqlite(tmp_path)


async def test_a_step_running_when_the_host_stops_finishes_and_is_stored(
    make_host: Callable[[HostOptions], WorkflowHost],
) -> None:
    """StopAsyncScenario: the step running at the stop finishes (within the grace period),
    its completion is stored, no new step starts, and the next host runs the rest: every
    step ran exactly once."""
    steps = Slow(seconds=0.3)
    definition = steps.definition()
    options = HostOptions(shutdown_grace=10.0)
    host = make_host(options)
    async with host:
        host.register(definition)  # type: ignore[arg-type]
        workflow_id = await host.start_workflow("stop-async")
        await steps.started.wait()
    # Left while "slow" ran: it finished, and nothing after it started.
    assert (steps.first, steps.finished_first, steps.second) == (1, 1, 0)
    again = make_host(options)
    async with again:
        again.register(definition)  # type: ignore[arg-type]
        stored = await again.get_workflow(workflow_id)
        by_name = {p.step_name: p for p in stored.pointers}
        assert by_name["slow"].status == PointerStatus.COMPLETE
        assert stored.status == WorkflowStatus.RUNNABLE
        # The stop released the lease: the next host takes the instance at once.
        with anyio.fail_after(5):
            finished = await again.wait_for_workflow(workflow_id, timeout=5)
    assert finished.status == WorkflowStatus.COMPLETE
    assert (steps.first, steps.second) == (1, 1)


async def test_steps_still_running_after_the_grace_period_are_cancelled(
    make_host: Callable[[HostOptions], WorkflowHost], caplog: pytest.LogCaptureFixture
) -> None:
    """A step that outlasts ``shutdown_grace`` is cancelled then, the lease is released, and
    the next host runs the step again at once (steps run at least once)."""
    steps = Slow(seconds=30.0)
    definition = steps.definition()
    host = make_host(HostOptions(shutdown_grace=0.2))
    caplog.set_level(logging.INFO, logger="wfe_host")
    async with host:
        host.register(definition)  # type: ignore[arg-type]
        workflow_id = await host.start_workflow("stop-async")
        await steps.started.wait()
        started = anyio.current_time()
    took = anyio.current_time() - started
    assert 0.2 <= took < 3.0
    assert (steps.first, steps.finished_first) == (1, 0)
    messages = [r.getMessage() for r in caplog.records]
    assert "stopping: waiting up to 0.2 s for the running steps of 1 workflow to finish" in messages
    assert any("1 workflow still running after 0.2 s; cancelling" in m for m in messages)
    steps.seconds = 0.0
    steps.started = anyio.Event()
    again = make_host(HostOptions(shutdown_grace=0.2))
    async with again:
        again.register(definition)  # type: ignore[arg-type]
        # Well under the 30 s lease: the stopped host released it.
        finished = await again.wait_for_workflow(workflow_id, timeout=5)
    assert finished.status == WorkflowStatus.COMPLETE
    assert (steps.first, steps.second) == (2, 1)


async def test_a_cancelled_exit_does_not_wait_for_the_grace_period() -> None:
    """Leaving the host under cancellation (what a second Ctrl+C does) cancels the steps at
    once instead of waiting ``shutdown_grace``."""
    steps = Slow(seconds=30.0)
    host = WorkflowHost(options=HostOptions(shutdown_grace=60.0))
    with anyio.move_on_after(5) as outer:
        async with host:
            host.register(steps.definition())  # type: ignore[arg-type]
            await host.start_workflow("stop-async")
            await steps.started.wait()
            outer.deadline = anyio.current_time() + 0.1
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert steps.finished_first == 0
