"""Helpers for the tests of the commands that open a host (worker, workflows, events).

Loaded by path from those test modules (``--import-mode=importlib`` gives test directories no
package). The wfe-host test session has no database provider installed, so the in-process
tests use :class:`SharedStore`: a plugin whose ``shared`` persistence is one in-memory store
that outlives each command, as a database would. Lock, queue and lifecycle stay ``memory``
(fresh per command): the scheduler and event recovery of a worker find stored work without
them, as they do for a restarted host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from click.testing import CliRunner, Result

from wfe_core import ErrorBehavior, ExecutionResult, WorkflowBuilder
from wfe_core.memory import MemoryPersistence
from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_host import WorkflowHost
from wfe_host.cli import CliState, main
from wfe_host.options import HostOptions
from wfe_host.plugins import make_plugin_manager
from wfe_host.registry import PluginRegistry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from wfe_core.models import WorkflowDefinition

NO_AUTOLOAD = {"WFE_DISABLE_PLUGIN_AUTOLOAD": "1"}


class SharedStore:
    """A plugin: persistence ``shared`` (scheme ``shared://``), one store for every command."""

    def __init__(self) -> None:
        self.persistence = MemoryPersistence()

    @hookimpl
    def register_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                ProviderKind.PERSISTENCE,
                "shared",
                lambda url, options: self.persistence,
                summary="one in-memory store shared by the commands of a test",
                url_schemes=("shared",),
                capabilities=MemoryPersistence.capabilities,
            )
        ]


def registry_with(*plugins: tuple[str, object]) -> PluginRegistry:
    """The built-in memory plugin plus ``plugins`` (name, plugin object); no entry points."""
    pm = make_plugin_manager(NO_AUTOLOAD)
    for name, plugin in plugins:
        pm.register_plugin(plugin, name, distribution=f"test-{name}", version="1.0")
    return PluginRegistry(pm)


class Cli:
    """Invokes ``wfe`` in this process with a given registry and environment."""

    def __init__(self, registry: PluginRegistry, env: Mapping[str, str] | None = None) -> None:
        self.registry = registry
        self.env = {**NO_AUTOLOAD, **(env or {})}

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        color: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        return CliRunner().invoke(
            main,
            list(args),
            obj=CliState(registry=self.registry),
            env={**self.env, **(env or {})},
            input=input,
            color=color,
        )


def on_host(
    persistence: Any,
    definitions: Sequence[WorkflowDefinition],
    body: Callable[[WorkflowHost], Awaitable[Any]],
    *,
    run_workers: bool = False,
) -> Any:
    """Run ``body`` on a host over ``persistence`` with ``definitions`` registered."""

    async def run() -> Any:
        host = WorkflowHost(persistence=persistence, options=HostOptions(run_workers=run_workers))
        for definition in definitions:
            host.register(definition)
        async with host:
            return await body(host)

    return anyio.run(run)


def start(
    persistence: Any,
    definitions: Sequence[WorkflowDefinition],
    definition_id: str,
    data: Any = None,
    *,
    reference: str | None = None,
    run: bool = False,
) -> str:
    """Start a workflow (``run``: and run it to its end in this process); returns its id."""

    async def body(host: WorkflowHost) -> str:
        workflow_id = await host.start_workflow(definition_id, data=data, reference=reference)
        if run:
            await host.wait_for_workflow(workflow_id, timeout=10)
        return workflow_id

    result: str = on_host(persistence, definitions, body, run_workers=run)
    return result


# -- definitions ---------------------------------------------------------------------------------


def _greet(ctx: Any) -> None:
    ctx.data["greeting"] = f"hello {ctx.data.get('name', '?')}"


def _fail(ctx: Any) -> None:
    raise RuntimeError("boom\nsecond line")


def stop_worker(ctx: Any) -> ExecutionResult:
    """A step that stops the worker running it, as SIGTERM from a service manager would."""
    signal.raise_signal(signal.SIGTERM)
    return ExecutionResult.next()


def definitions() -> list[WorkflowDefinition]:
    """``greet`` (one step), ``approval`` (waits for event ``approval`` keyed by the name)
    and ``failing`` (its step raises; the workflow is terminated)."""
    greet = WorkflowBuilder(dict).start_with(_greet).name("Greet").build("greet", version=1)
    approval = (
        WorkflowBuilder(dict)
        .start_with(_greet)
        .name("Greet")
        .wait_for("approval", key=lambda data: data["name"])
        .name("Approval")
        .output(approved=lambda step: step.event_data)
        .build("approval", version=1)
    )
    failing = (
        WorkflowBuilder(dict)
        .start_with(_fail)
        .name("Fail")
        .on_error(ErrorBehavior.terminate())
        .build("failing", version=2)
    )
    return [greet, approval, failing]


# -- processes -----------------------------------------------------------------------------------


def clean_environ(**extra: str) -> dict[str, str]:
    """The environment without ``WFE_*`` variables (the developer's own must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(extra)
    return env


def wfe_command() -> list[str]:
    """The installed ``wfe`` script (it does not put the working directory on ``sys.path``
    as ``python -m`` does, which the worker's --module must cope with), else ``-m``."""
    script = Path(sys.executable).with_name("wfe")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wfe_host"]


def wfe_process(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``wfe ARGS`` to completion in ``cwd``."""
    return subprocess.run(
        [*wfe_command(), *args],
        cwd=cwd,
        env=dict(env) if env is not None else clean_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
