"""Helpers shared by the wfe-yaml test modules."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from wfe_host import WorkflowHost
from wfe_yaml import load_workflows_from_str

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from wfe_core.models import ExecutionPointer, WorkflowInstance


async def run_yaml(
    text: str,
    data: Mapping[str, Any] | None = None,
    *,
    base_dir: Path | None = None,
    config: Mapping[str, Any] | None = None,
    workflow: str | None = None,
    timeout: float = 60,
) -> WorkflowInstance:
    """Load ``text``, run its first workflow (or ``workflow``) on an in-memory host and
    return the finished instance."""
    definitions = load_workflows_from_str(text, config, base_dir=base_dir)
    async with WorkflowHost() as host:
        for definition in definitions:
            host.register(definition)
        workflow_id = await host.start_workflow(workflow or definitions[0].id, dict(data or {}))
        return await host.wait_for_workflow(workflow_id, timeout=timeout)


def pointers(instance: WorkflowInstance, name: str) -> list[ExecutionPointer]:
    """The pointers of the visible step ``name`` (not the internal guard plumbing)."""
    return [
        p
        for p in instance.pointers
        if p.step_name == name and ("result" in p.extensions or p.error is not None)
    ]


def result_of(instance: WorkflowInstance, name: str) -> dict[str, Any]:
    """The recorded result (exit code, output tails) of step ``name``'s last run."""
    found = pointers(instance, name)
    assert found, f"step {name!r} never ran: {[p.step_name for p in instance.pointers]}"
    return dict(found[-1].extensions["result"])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited; it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def kill_alive(pids: list[int]) -> None:
    """Tidy up after a failing test (the processes would outlive the test run)."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
