"""``wfe worker``: a long-running host process that executes workflows.

It registers the definitions it is given (definition files through the plugins' formats, and
Python modules), runs the host's consumers until SIGINT or SIGTERM, then stops. Passes cut
short by the stop are safe: another worker (or this one, restarted) takes the instance over
once the lease lapses, and revision checks keep a half-finished pass from being stored twice.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from wfe_core.errors import ConfigurationError
from wfe_core.models import WorkflowDefinition
from wfe_core.spi import processes
from wfe_host.cli.host_factory import build_host, describe_store, run_async
from wfe_host.cli.signals import stopping_line, until_signalled
from wfe_host.cli.state import cli_state
from wfe_host.logs import LEVELS, configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_host.host import WorkflowHost
    from wfe_host.registry import PluginRegistry

__all__ = [
    "definition_files",
    "freeze_start_up_objects",
    "load_module_definitions",
    "parse_variables",
    "serve",
    "worker_command",
]

logger = logging.getLogger("wfe_host.cli.worker")


# -- what to run ---------------------------------------------------------------------------------


def parse_variables(items: Iterable[str]) -> dict[str, str]:
    """``VAR=VALUE`` items as a mapping (later items win); raises :class:`click.BadParameter`."""
    variables: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected VAR=VALUE, got {item!r}", param_hint="--set")
        variables[name.strip()] = value
    return variables


def definition_files(paths: Iterable[Path], registry: PluginRegistry) -> list[Path]:
    """The definition files of ``paths``: files as given, directories searched recursively
    (hidden ones skipped) for files with an installed format's suffix, in name order."""
    suffixes = tuple(s.lower() for fmt in registry.definition_formats() for s in fmt.suffixes)
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)  # an unknown suffix is reported when it is loaded
            continue
        found = sorted(
            candidate
            for candidate in path.rglob("*")
            if candidate.is_file()
            and candidate.name.lower().endswith(suffixes)
            and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
        )
        if not found:
            known = ", ".join(suffixes) or "none are installed"
            raise ConfigurationError(f"no definition files in directory {path} (suffixes: {known})")
        files.extend(found)
    return files


def load_module_definitions(spec: str) -> list[WorkflowDefinition]:
    """The definitions a Python module exposes: ``pkg.mod`` (its ``definitions`` list, else
    every module-level :class:`~wfe_core.models.WorkflowDefinition`) or ``pkg.mod:name`` (one
    attribute: a definition or a list of them).

    The working directory is importable, as with ``python -m``.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise click.BadParameter(f"expected a module name, got {spec!r}", param_hint="--module")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # The console script does not put the working directory on the path as
        # `python -m` does; worker modules usually live there.
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing module named by the user is theirs to fix; a missing dependency of
        # that module is reported as it is (with the traceback under --debug).
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        raise ConfigurationError(
            f"cannot import module {module_name!r}: {exc} (is it on PYTHONPATH or in the "
            "current directory?)"
        ) from exc
    if attribute:
        if not hasattr(module, attribute):
            raise ConfigurationError(f"module {module_name!r} has no attribute {attribute!r}")
        found = _definitions_in(getattr(module, attribute), f"{module_name}:{attribute}")
    elif hasattr(module, "definitions"):
        found = _definitions_in(module.definitions, f"{module_name}.definitions")
    else:
        found = _unique(v for v in vars(module).values() if isinstance(v, WorkflowDefinition))
    if not found:
        raise ConfigurationError(
            f"module {module_name!r} has no workflow definitions (module-level "
            "WorkflowDefinition objects or a 'definitions' list)"
        )
    return found


def _definitions_in(value: Any, where: str) -> list[WorkflowDefinition]:
    if isinstance(value, WorkflowDefinition):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        items = list(value)
        wrong = [item for item in items if not isinstance(item, WorkflowDefinition)]
        if not wrong:
            return _unique(items)
        raise ConfigurationError(
            f"{where}: expected WorkflowDefinition objects, found a {type(wrong[0]).__name__}"
        )
    raise ConfigurationError(
        f"{where}: expected a WorkflowDefinition or a list of them, got {type(value).__name__}"
    )


def _unique(definitions: Iterable[WorkflowDefinition]) -> list[WorkflowDefinition]:
    # The same object under two names (an alias) is one definition.
    unique: list[WorkflowDefinition] = []
    for definition in definitions:
        if not any(definition is seen for seen in unique):
            unique.append(definition)
    return unique


# -- running -------------------------------------------------------------------------------------


async def serve(
    host: WorkflowHost,
    stop: anyio.Event,
    *,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run ``host`` (entering it starts its consumers) until ``stop`` is set, then close it."""
    async with host:
        if on_ready is not None:
            on_ready()
        await stop.wait()


async def _serve_until_signalled(
    host: WorkflowHost, on_ready: Callable[[], None]
) -> tuple[str | None, bool]:
    """Serve until a stop signal; a second one cuts the shutdown short.

    Returns the name of the first signal (``None`` if none came) and whether the shutdown was
    forced.
    """
    stop = anyio.Event()

    def on_signal(name: str, count: int) -> bool:
        if count > 1:
            return True
        click.echo(f"wfe worker: {name} received, {stopping_line(host)}", err=True)
        stop.set()
        return False

    _, received = await until_signalled(lambda: serve(host, stop, on_ready=on_ready), on_signal)
    return (received[0] if received else None), len(received) > 1


def freeze_start_up_objects() -> None:
    """Leave the objects alive once the host is started (modules, definitions, the host and
    its providers: they live as long as the process) out of every later garbage collection.

    A full collection traverses every tracked object; a worker's start-up makes tens of
    thousands that never become garbage, so without this the full collections of a busy
    worker cost 0.1-0.4 ms per 3-step workflow on PostgreSQL, about a tenth with it
    (``python -m bench.gc_cost``, docs/benchmarks.md). Garbage made so far is collected
    first, so none is kept for good. A process-wide setting: the worker owns its process, an
    application embedding a host decides for its own.
    """
    gc.collect()
    gc.freeze()


@click.command("worker")
@click.argument(
    "paths",
    nargs=-1,
    type=click.Path(exists=True, path_type=Path),
    envvar="WFE_WORKER_PATHS",
)
@click.option(
    "-m",
    "--module",
    "modules",
    multiple=True,
    metavar="MODULE[:NAME]",
    envvar="WFE_WORKER_MODULES",
    show_envvar=True,
    help="A Python module whose workflow definitions to run: its 'definitions' list, else "
    "every module-level WorkflowDefinition; or one attribute with :NAME. Repeatable "
    "(space-separated in the variable).",
)
@click.option(
    "--set",
    "variables",
    multiple=True,
    metavar="VAR=VALUE",
    help="A variable for the definition files (e.g. ${VAR} in YAML). Repeatable.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Workflow passes run at the same time.  [env var: WFE_HOST_CONCURRENCY; default: 32]",
)
@click.option(
    "--worker-id",
    default=None,
    help="This worker's name in leases and logs; default host:pid:random.  "
    "[env var: WFE_HOST_WORKER_ID]",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default=None,
    help="Logging threshold on stderr; default: the global --log-level (WFE_LOG_LEVEL), else info.",
)
@click.pass_context
def worker_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    modules: tuple[str, ...],
    variables: tuple[str, ...],
    concurrency: int | None,
    worker_id: str | None,
    log_level: str | None,
) -> None:
    """Run workflows until stopped with Ctrl+C (SIGINT) or SIGTERM.

    Registers the workflow definitions in PATHS (definition files, or directories searched
    for them; the formats come from plugins, e.g. .yaml from wfe-yaml) and in the --module
    modules, then executes the workflows stored in the configured persistence: those started
    by `wfe run`, other processes or other workers. Several workers may share one store.

    PATHS may also come from WFE_WORKER_PATHS (separated by ':', or ';' on Windows, as in
    PATH).
    """
    state = cli_state(ctx)
    config = parse_variables(variables)
    configure_logging(log_level or state.log_level or "info", state.log_format)
    host_settings: dict[str, Any] = {}
    if concurrency is not None:
        host_settings["concurrency"] = concurrency
    if worker_id is not None:
        host_settings["worker_id"] = worker_id
    if host_settings:
        # Command-line values, so they sit above WFE_HOST_* and the settings file.
        existing = state.overrides.get("host")
        state.overrides["host"] = {
            **(existing if isinstance(existing, Mapping) else {}),
            **host_settings,
        }
    if not paths and not modules:
        raise click.UsageError(
            "nothing to run: give definition files or directories, or --module MODULE"
        )

    host, resolved = build_host(state)
    definitions: list[WorkflowDefinition] = []
    for file in definition_files(paths, resolved.registry):
        definitions.extend(host.load_definitions(file, config or None))
    for spec in modules:
        for definition in load_module_definitions(spec):
            definitions.append(host.register(definition))

    def announce() -> None:
        freeze_start_up_objects()
        names = ", ".join(f"{d.id} v{d.version}" for d in definitions)
        count = len(definitions)
        click.echo(
            f"wfe worker {host.worker_id}: {count} definition{'s' if count != 1 else ''} "
            f"({names}); persistence {describe_store(resolved)}; concurrency "
            f"{host.options.concurrency}. Stop with Ctrl+C.",
            err=True,
        )

    # Kills the steps' processes if this process dies without stopping them (SIGKILL).
    with processes.watchdog():
        _signal_name, forced = run_async(lambda: _serve_until_signalled(host, announce))
    if forced:
        click.echo("wfe worker: stopped at once", err=True)
        ctx.exit(1)
    click.echo("wfe worker: stopped", err=True)
