"""Hooks of the host, added to those of :mod:`wfe_core.plugins.hookspecs`.

They live in ``wfe-host`` because they name host-only types (click commands); a plugin that
implements them depends on ``wfe-host`` as well as ``wfe-core``. Like every ``wfe`` hook, they
are synchronous and only describe what the plugin offers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.plugins import hookspec

if TYPE_CHECKING:
    import click


@hookspec
def register_cli_commands() -> list[click.Command]:  # type: ignore[empty-body]
    """Subcommands to add to the ``wfe`` command line.

    Return ``click`` commands (or groups); each is added under its own ``name``, so
    ``wfe <name> ...`` runs it. A name that is already taken (by a built-in command or by
    another plugin) is an error reported when ``wfe`` starts. Commands can read the global
    settings options (``--persistence`` and friends) from the click context with
    :func:`wfe_host.cli.cli_state` and resolve providers with its ``resolve()`` method.

    Keep imports of heavy libraries inside the command callbacks so that ``wfe --help`` stays
    fast.
    """
