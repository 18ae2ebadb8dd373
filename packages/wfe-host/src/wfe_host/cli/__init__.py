"""The ``wfe`` command line.

Built-in commands live in this package; plugins add more through the
``register_cli_commands`` hook (:mod:`wfe_host.hookspecs`). Every failure WFE raises on purpose
(:class:`~wfe_core.errors.WfeError`) ends the command with one ``Error: ...`` line and exit
status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wfe_core.errors import PluginError, WfeError
from wfe_host.cli.activities import activities_group
from wfe_host.cli.config import config_group
from wfe_host.cli.events import events_group
from wfe_host.cli.graph import graph_command
from wfe_host.cli.info import plugins_command, providers_command
from wfe_host.cli.migrate import migrate_command
from wfe_host.cli.purge import purge_command
from wfe_host.cli.run import run_command
from wfe_host.cli.search import search_command
from wfe_host.cli.state import CliState, cli_state
from wfe_host.cli.tasks import tasks_group
from wfe_host.cli.terminal import color_from_environment
from wfe_host.cli.validate import validate_command
from wfe_host.cli.worker import worker_command
from wfe_host.cli.workflows import workflows_group
from wfe_host.logs import FORMATS, LEVELS, configure_logging
from wfe_host.plugins import ENV_TRACE_PLUGINS, env_flag
from wfe_host.settings import CONCERNS, ENV_CONFIG

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["CliState", "WfeGroup", "cli_state", "main"]


def _versions() -> list[tuple[str, str]]:
    found = []
    for dist in ("wfe-host", "wfe-core"):
        try:
            found.append((dist, version(dist)))
        except PackageNotFoundError:  # a source tree that is not installed
            found.append((dist, "unknown"))
    return found


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for dist, ver in _versions():
        click.echo(f"{dist} {ver}")
    ctx.exit()


def _configure_plugin_tracing() -> None:
    if env_flag(os.environ, ENV_TRACE_PLUGINS):
        # Tracing was asked for explicitly: show it even without --debug.
        plugins_logger = logging.getLogger("wfe_core.plugins.manager")
        plugins_logger.setLevel(logging.DEBUG)
        if not logging.getLogger().handlers and not plugins_logger.handlers:
            plugins_logger.addHandler(logging.StreamHandler(sys.stderr))


class WfeGroup(click.Group):
    """The ``wfe`` group: adds the plugins' commands and turns errors into one line."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        cached = ctx.meta.get("wfe.plugin_commands")
        if isinstance(cached, dict):
            return cached
        registry = cli_state(ctx).get_registry()
        commands: dict[str, click.Command] = {}
        owners: dict[str, str] = {}
        for plugin, command in registry.collect("register_cli_commands", click.Command):
            name = command.name
            if not name:
                raise PluginError(
                    f"{registry.manager.describe(plugin)}: a command from "
                    "register_cli_commands has no name"
                )
            if name in self.commands:
                raise PluginError(
                    f"{registry.manager.describe(plugin)} adds command {name!r}, which is a "
                    "built-in wfe command"
                )
            if name in commands:
                raise PluginError(
                    f"command {name!r} is added twice: by "
                    f"{registry.manager.describe(owners[name])} and by "
                    f"{registry.manager.describe(plugin)}"
                )
            commands[name] = command
            owners[name] = plugin
        ctx.meta["wfe.plugin_commands"] = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Built-in and plugin commands; a broken plugin only leaves its commands out of
        the help (with a warning), so ``wfe --help`` always works."""
        names = set(super().list_commands(ctx))
        try:
            names.update(self._plugin_commands(ctx))
        except WfeError as exc:
            click.echo(f"Warning: plugin commands are unavailable: {exc}", err=True)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, else a plugin's."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._plugin_commands(ctx).get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :class:`~wfe_core.errors.WfeError` becomes one error line."""
        debug = bool(ctx.params.get("debug"))
        try:
            _configure_plugin_tracing()  # inside: a bad WFE_TRACE_PLUGINS value is an error too
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except WfeError as exc:
            if debug:
                raise
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            if debug:
                raise
            logger.debug("unexpected error", exc_info=True)
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"
            ) from exc


def _concern_option(concern: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    variable = f"WFE_{concern.upper()}"
    # The variable is read by the settings loader (with the other WFE_* variables), not by
    # click, so that it keeps its place below explicit values; the help still names it.
    return click.option(
        f"--{concern}",
        metavar="URL|NAME",
        default=None,
        help=f"The {concern} provider: a URL or a provider name.  [env var: {variable}]",
    )


@click.group(
    cls=WfeGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the versions of wfe-host and wfe-core and exit.",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="WFE_DEBUG",
    show_envvar=True,
    help="Show tracebacks and debug logs instead of one error line.",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Settings file (TOML); default: wfe.toml, else [tool.wfe] in pyproject.toml.  "
    f"[env var: {ENV_CONFIG}]",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default=None,
    envvar="WFE_LOG_LEVEL",
    show_envvar=True,
    help="Log records at this level and above on stderr; default: warning (info for "
    "'wfe worker'; --debug means debug).",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    envvar="WFE_LOG_FORMAT",
    show_envvar=True,
    help="Log lines as text or as one JSON object per line (with workflow and step ids).",
)
@_concern_option("persistence")
@_concern_option("lock")
@_concern_option("queue")
@_concern_option("search")
@_concern_option("lifecycle")
@click.pass_context
def main(
    ctx: click.Context,
    /,
    debug: bool,
    config: Path | None,
    log_level: str | None,
    log_format: str,
    **concerns: str | None,
) -> None:
    """WFE: a persistent, embeddable workflow engine.

    Settings come from these options, WFE_* environment variables, a wfe.toml file and
    defaults, in that order of priority.
    """
    # NO_COLOR / FORCE_COLOR for every command: click.echo strips or keeps styles by this.
    ctx.color = color_from_environment()
    state = cli_state(ctx)
    state.debug = debug
    state.config = config
    state.log_level = "debug" if debug else log_level
    state.log_format = log_format
    configure_logging(state.log_level or "warning", log_format)
    state.overrides.update(
        {name: value for name, value in concerns.items() if name in CONCERNS and value}
    )


main.add_command(plugins_command)
main.add_command(providers_command)
main.add_command(worker_command)
main.add_command(workflows_group)
main.add_command(search_command)
main.add_command(events_group)
main.add_command(run_command)
main.add_command(validate_command)
main.add_command(graph_command)
main.add_command(config_group)
main.add_command(purge_command)
main.add_command(migrate_command)
main.add_command(activities_group)
main.add_command(tasks_group)
