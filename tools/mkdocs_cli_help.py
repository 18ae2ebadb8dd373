"""mkdocs hook: replaces ``<!-- wfe-help -->`` with the ``--help`` of every ``wfe`` command.

The site is built with wfe-host and wfe-yaml installed, so plugin commands (``wfe run``,
``wfe validate``, ``wfe graph``) are listed as a user sees them.
"""

from __future__ import annotations

from typing import Any

import click

MARKER = "<!-- wfe-help -->"


def _sections(command: click.Command, path: list[str]) -> list[str]:
    name = " ".join(path)
    with click.Context(command, info_name=name, terminal_width=100) as ctx:
        text = command.get_help(ctx)
    out = [f"## `{name}`", "", "```text", text, "```", ""]
    if isinstance(command, click.Group):
        with click.Context(command, info_name=name) as ctx:
            for sub in command.list_commands(ctx):
                found = command.get_command(ctx, sub)
                if found is not None and not found.hidden:
                    out += _sections(found, [*path, sub])
    return out


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from wfe_host.cli import main

    return markdown.replace(MARKER, "\n".join(_sections(main, ["wfe"])))
