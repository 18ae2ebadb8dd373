"""``wfe plugins`` and ``wfe providers``: what is installed, and from which distribution."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from wfe_core.plugins import ProviderKind
from wfe_host.cli.state import cli_state

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wfe_host.plugins import PluginInfo
    from wfe_host.registry import RegisteredProvider


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: a header line, then one line per row, columns padded to fit."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, *rows)
    ]
    return "\n".join(lines)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def plugin_record(info: PluginInfo) -> dict[str, Any]:
    """``info`` as the JSON object ``wfe plugins --json`` prints."""
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "module": info.module,
        "builtin": info.builtin,
        "hooks": list(info.hooks),
    }


def provider_record(entry: RegisteredProvider) -> dict[str, Any]:
    """``entry`` as the JSON object ``wfe providers --json`` prints."""
    spec = entry.spec
    return {
        "kind": entry.kind.value,
        "name": entry.name,
        "plugin": entry.plugin,
        "distribution": entry.distribution,
        "version": entry.version,
        "summary": spec.summary,
        "url_schemes": list(spec.url_schemes),
        "capabilities": sorted(spec.capabilities),
        "options": spec.options_class.__qualname__ if spec.options_class else None,
    }


_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


@click.command("plugins")
@_json_option
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List the loaded plugins, their distributions and the hooks they implement."""
    infos = cli_state(ctx).get_registry().plugins()
    if as_json:
        _echo_json([plugin_record(i) for i in infos])
        return
    rows = [
        [
            info.name,
            info.distribution or "-",
            (info.version or "-") + (" (built-in)" if info.builtin else ""),
            ", ".join(info.hooks) or "-",
        ]
        for info in infos
    ]
    click.echo(format_table(["NAME", "DISTRIBUTION", "VERSION", "HOOKS"], rows))


@click.command("providers")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in ProviderKind]),
    default=None,
    help="Only providers of this kind.",
)
@_json_option
@click.pass_context
def providers_command(ctx: click.Context, kind: str | None, as_json: bool) -> None:
    """List the installed providers of persistence, lock, queue, search and lifecycle events.

    Select one in settings by its name (e.g. --persistence memory) or by a URL with one of its
    schemes. The table also lists installed YAML step types and definition formats.
    """
    entries = cli_state(ctx).get_registry().providers(kind)
    if as_json:
        _echo_json([provider_record(e) for e in entries])
        return
    rows = [
        [
            e.kind.value,
            e.name,
            e.distribution or f"plugin {e.plugin}",
            ", ".join(f"{s}://" for s in e.spec.url_schemes) or "-",
            ", ".join(sorted(e.spec.capabilities)) or "-",
            e.spec.summary,
        ]
        for e in entries
    ]
    headers = ["KIND", "NAME", "DISTRIBUTION", "URL SCHEMES", "CAPABILITIES", "SUMMARY"]
    click.echo(format_table(headers, rows))
    if kind is not None:
        return
    # Step types and definition formats are plugin offerings too; shown only when installed
    # (by wfe-yaml, typically) and only in the table, so the JSON stays a list of providers.
    registry = cli_state(ctx).get_registry()
    steps = registry.step_executors()
    if steps:
        step_rows = [
            [s.name, s.distribution or f"plugin {s.plugin}", s.spec.summary] for s in steps
        ]
        click.echo()
        click.echo(format_table(["STEP TYPE", "DISTRIBUTION", "SUMMARY"], step_rows))
    formats = registry.definition_formats()
    if formats:
        format_rows = [
            [f.name, f.distribution or f"plugin {f.plugin}", ", ".join(f.suffixes), f.spec.summary]
            for f in formats
        ]
        click.echo()
        click.echo(
            format_table(["DEFINITION FORMAT", "DISTRIBUTION", "SUFFIXES", "SUMMARY"], format_rows)
        )
