"""Shared fixtures of the wfe-yaml tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from wfe_host import WorkflowHost
from wfe_yaml import load_workflows_from_str

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from wfe_core.models import ExecutionPointer, WorkflowInstance


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def deno_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Deno keeps its caches in a temporary DENO_DIR, never in the user's."""
    path = tmp_path_factory.mktemp("deno-dir")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("DENO_DIR", str(path))
    patcher.setenv("DENO_NO_UPDATE_CHECK", "1")
    yield path
    patcher.undo()


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
