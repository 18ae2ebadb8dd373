"""The state the global ``wfe`` options set, shared with every subcommand."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from wfe_host.registry import PluginRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_host.bootstrap import ResolvedSettings


@attrs.define
class CliState:
    """What the global ``wfe`` options set, shared with every subcommand (``ctx.obj``).

    Subcommands (built-in or from plugins) get it with :func:`cli_state` and build providers
    with :meth:`resolve`, so ``--persistence`` and friends work the same everywhere.
    """

    #: Show tracebacks and DEBUG logs.
    debug: bool = False
    #: The settings file given with ``--config`` (else ``$WFE_CONFIG``/``wfe.toml`` apply).
    config: Path | None = None
    #: ``--log-level`` / ``WFE_LOG_LEVEL`` (``debug`` with ``--debug``); ``None``: the
    #: command's default.
    log_level: str | None = None
    #: ``--log-format`` / ``WFE_LOG_FORMAT``: ``text`` or ``json``.
    log_format: str = "text"
    #: Settings given on the command line (``{"persistence": "sqlite:///wfe.db"}``).
    overrides: dict[str, Any] = attrs.Factory(dict)
    #: The plugin registry; built from the environment on first use when not given.
    registry: PluginRegistry | None = None

    def get_registry(self) -> PluginRegistry:
        """The registry of installed plugins (built once per invocation)."""
        if self.registry is None:
            self.registry = PluginRegistry.from_environ()
        return self.registry

    def resolve(self, *, defaults: Mapping[str, Any] | None = None) -> ResolvedSettings:
        """Providers from the command line, ``WFE_*`` variables and the settings file.

        ``defaults`` are the command's own defaults, below every other source.
        """
        from wfe_host.bootstrap import resolve

        return resolve(
            self.config, registry=self.get_registry(), defaults=defaults, **self.overrides
        )


def cli_state(ctx: click.Context | None = None) -> CliState:
    """The :class:`CliState` of the running ``wfe`` command."""
    context = ctx if ctx is not None else click.get_current_context()
    return context.ensure_object(CliState)
