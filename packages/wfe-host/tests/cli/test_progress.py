"""``wfe run``'s progress lines keep their order whatever order their sources deliver them in.

A step's output lines come through the ``wfe.output`` logger the moment the step prints them;
its STEP_STARTED lifecycle event is published after the pass stores the step's start and
reaches the progress through the lifecycle subscription, behind the events before it. So
the output can arrive first: these tests deliver it first, on a real host's stored workflow.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from wfe_core import ExecutionResult, WorkflowBuilder
from wfe_core.memory import MemoryPersistence
from wfe_core.models import LifecycleEvent, LifecycleEventType
from wfe_host import WorkflowHost
from wfe_host.cli.progress import OUTPUT_LOGGER, Progress
from wfe_host.options import HostOptions

if TYPE_CHECKING:
    import pytest


def _say(ctx: object) -> ExecutionResult:
    return ExecutionResult.next()


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_output_before_the_start_event_is_shown_after_the_start_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    definition = WorkflowBuilder(dict).start_with(_say).name("Say").build("say", version=1)

    async def main() -> None:
        host = WorkflowHost(persistence=MemoryPersistence(), options=HostOptions())
        host.register(definition)
        async with host:
            workflow_id = await host.start_workflow("say", {})
            instance = await host.wait_for_workflow(workflow_id, timeout=10)
            (pointer,) = instance.pointers
            capsys.readouterr()

            def event(kind: LifecycleEventType, message: str | None = None) -> LifecycleEvent:
                return LifecycleEvent(
                    type=kind,
                    workflow_id=workflow_id,
                    definition_id="say",
                    version=1,
                    step_id=pointer.step_id,
                    step_name="Say",
                    pointer_id=pointer.id,
                    message=message,
                )

            def output(line: str) -> None:
                logging.getLogger(OUTPUT_LOGGER).info(
                    "%s",
                    line,
                    extra={
                        "workflow_id": workflow_id,
                        "step_name": "Say",
                        "pointer_id": pointer.id,
                        "stream": "stdout",
                        "line": line,
                    },
                )

            with Progress(host, workflow_id, tty=False, color=False) as progress:
                output("first")  # before the step's STEP_STARTED event
                await progress.on_event(event(LifecycleEventType.STEP_STARTED))
                output("second")
                await progress.on_event(event(LifecycleEventType.WORKFLOW_ERROR, "boom"))
                output("retried")  # the next attempt, again before its event
                await progress.on_event(event(LifecycleEventType.STEP_STARTED))
                await progress.on_event(event(LifecycleEventType.STEP_COMPLETED))

    anyio.run(main)
    lines = _lines(capsys)
    assert lines[:5] == [
        "▶ Say",
        "  Say │ first",
        "  Say │ second",
        lines[3],
        "▶ Say",
    ]
    assert lines[3].startswith("✗ Say failed (")
    assert lines[3].endswith("): boom")
    assert lines[5] == "  Say │ retried"
    assert lines[6].startswith("✓ Say (")
    assert len(lines) == 7
