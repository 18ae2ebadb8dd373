"""Opening a :class:`~wfe_host.WorkflowClient` or :class:`~wfe_host.WorkflowHost` from the
``wfe`` command line's settings.

Commands that only read or change stored state build a client with :func:`build_client`;
those that run workflows (``wfe run``, ``wfe worker``) a host with :func:`build_host`
(settings from the global options, ``WFE_*`` variables, the settings file and the CLI
defaults of :mod:`wfe_host.cli.defaults`). They run their async body with :func:`run_async`,
which keeps errors one line long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import click

from wfe_host.cli.defaults import memory_warning, resolve_cli_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wfe_host.bootstrap import ResolvedSettings
    from wfe_host.cli.state import CliState
    from wfe_host.client import WorkflowClient
    from wfe_host.host import WorkflowHost

__all__ = ["build_client", "build_host", "describe_store", "not_found", "run_async", "warn"]

T = TypeVar("T")


def warn(message: str) -> None:
    """Print ``Warning: message`` on stderr."""
    click.echo(click.style(f"Warning: {message}", fg="yellow"), err=True)


def build_host(
    state: CliState, *, warn_if_memory: bool = True
) -> tuple[WorkflowHost, ResolvedSettings]:
    """A host that runs workers (not yet entered) on the providers the CLI's settings
    select, and the settings. With ``warn_if_memory``, a warning says that an in-memory store
    shares nothing with other commands."""
    # Imported here: the runtime is not needed by `wfe --help` or `wfe providers`.
    from wfe_host.host import WorkflowHost

    resolved = _resolve(state, warn_if_memory=warn_if_memory)
    host = WorkflowHost(
        persistence=resolved.persistence,
        lock=resolved.lock,
        queue=resolved.queue,
        search=resolved.search,
        lifecycle=resolved.lifecycle,
        options=attrs.evolve(resolved.options, run_workers=True),
        registry=resolved.registry,
    )
    return host, resolved


def build_client(
    state: CliState, *, warn_if_memory: bool = True
) -> tuple[WorkflowClient, ResolvedSettings]:
    """A client (not yet entered: it runs no workflow itself) on the providers the CLI's
    settings select, and the settings, for commands that only read or change stored state.
    With ``warn_if_memory``, a warning says that an in-memory store shares nothing with other
    commands."""
    from wfe_host.client import WorkflowClient

    resolved = _resolve(state, warn_if_memory=warn_if_memory)
    client = WorkflowClient(
        persistence=resolved.persistence,
        lock=resolved.lock,
        queue=resolved.queue,
        search=resolved.search,
        lifecycle=resolved.lifecycle,
        options=resolved.options,
        registry=resolved.registry,
    )
    return client, resolved


def _resolve(state: CliState, *, warn_if_memory: bool) -> ResolvedSettings:
    resolved = resolve_cli_settings(state)
    if warn_if_memory:
        message = memory_warning(resolved)
        if message is not None:
            warn(message)
    return resolved


def describe_store(resolved: ResolvedSettings) -> str:
    """``sqlite (sqlite:///.wfe/wfe.db)``: the persistence provider and its (redacted) URL."""
    from wfe_host.registry import redact_url

    concern = resolved.settings.persistence
    name = concern.provider or "?"
    return f"{name} ({redact_url(concern.url)})" if concern.url else name


def not_found(workflow_id: str) -> click.ClickException:
    """The one-line error for an unknown workflow id."""
    return click.ClickException(f"no workflow with id {workflow_id!r}")


def run_async(function: Callable[[], Awaitable[T]]) -> T:
    """Run ``function`` in a fresh event loop and return its result.

    An exception group holding one exception (what task groups raise) is replaced by that
    exception, so that a :class:`~wfe_core.errors.WfeError` still becomes one error line.
    """

    async def main() -> T:
        return await function()

    try:
        return anyio.run(main)
    except BaseExceptionGroup as group:
        inner = _single(group)
        if inner is None:
            raise
        raise inner from group


def _single(group: BaseExceptionGroup[Any]) -> BaseException | None:
    """The one leaf exception of ``group`` (through nested groups), else ``None``."""
    members = group.exceptions
    if len(members) != 1:
        return None
    inner: BaseException = members[0]
    if isinstance(inner, BaseExceptionGroup):
        return _single(inner)
    return inner
