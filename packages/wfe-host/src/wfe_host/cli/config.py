"""``wfe config show``: the settings a command would use, and where each value came from."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import attrs
import click

from wfe_host.cli.defaults import resolve_cli_settings
from wfe_host.cli.state import cli_state
from wfe_host.registry import redact_url
from wfe_host.settings import CONCERNS

if TYPE_CHECKING:
    from wfe_host.bootstrap import ResolvedSettings

__all__ = ["config_group", "settings_rows"]

#: Shown instead of a value whose name says it is a secret.
MASK = "***"
# Option names that hold secrets (a password, not the path of a password file).
_SECRET = re.compile(r"(password|passwd|secret|token|api_?key|credential)(?!_file)", re.I)
#: The source of a value no source set.
DEFAULT = "default"
#: The source of a lock or queue setting taken over from the persistence provider.
FOLLOWS = "follows persistence"


@attrs.frozen
class SettingRow:
    """One resolved setting: its dotted path, its value (secrets masked) and its source."""

    path: str
    value: Any
    source: str


def _masked(name: str, value: Any) -> Any:
    if value is None:
        return None
    if _SECRET.search(name):
        return MASK
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    if isinstance(value, dict):
        return {key: _masked(str(key), item) for key, item in value.items()}
    return value


def settings_rows(resolved: ResolvedSettings) -> list[SettingRow]:
    """Every concern's provider, URL and options, then the host's options, in that order."""
    rows: list[SettingRow] = []
    origins = resolved.origins
    persistence = resolved.settings.persistence

    for concern in CONCERNS:
        settings = resolved.settings.concern(concern)
        follows = (
            concern in ("lock", "queue")
            and concern not in origins
            and settings.provider == persistence.provider
            and settings.url == persistence.url
        )
        # A value no source named came with the concern's shorthand (WFE_LOCK=url), else
        # with the persistence it follows, else it is a default.
        fallback = origins.get(concern) or (FOLLOWS if follows else DEFAULT)
        provider_source = origins.get(f"{concern}.provider") or (
            f"{origins[f'{concern}.url']} (by the URL's scheme)"
            if f"{concern}.url" in origins
            else fallback
        )
        rows.append(SettingRow(f"{concern}.provider", settings.provider, provider_source))
        for name, value in [("url", settings.url), *sorted(settings.options.items())]:
            path = f"{concern}.{name}" if name == "url" else f"{concern}.options.{name}"
            rows.append(SettingRow(path, _masked(name, value), origins.get(path) or fallback))
    host = resolved.settings.host
    for field in attrs.fields(type(host)):
        path = f"host.{field.name}"
        value = _masked(field.name, getattr(host, field.name))
        rows.append(SettingRow(path, value, origins.get(path) or DEFAULT))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


@click.group("config")
def config_group() -> None:
    """Inspect the settings commands use (see docs/settings.md)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows instead.")
@click.pass_context
def show_command(ctx: click.Context, as_json: bool) -> None:
    """Show the resolved settings: each concern's provider, URL and options, and the host's
    options, with the source of every value (an option, WFE_* variable, settings file, the
    command defaults, or `default`). Passwords in URLs and secret-named options are masked.

    Nothing is opened or connected: this only reads the settings.
    """
    rows = settings_rows(resolve_cli_settings(cli_state(ctx)))
    if as_json:
        click.echo(
            json.dumps(
                [{"setting": r.path, "value": r.value, "source": r.source} for r in rows],
                indent=2,
                default=str,
            )
        )
        return
    width = max(len(r.path) for r in rows)
    value_width = min(max(len(_text(r.value)) for r in rows), 60)
    click.echo(f"{'SETTING':<{width}}  {'VALUE':<{value_width}}  SOURCE")
    for row in rows:
        click.echo(f"{row.path:<{width}}  {_text(row.value):<{value_width}}  {row.source}")
