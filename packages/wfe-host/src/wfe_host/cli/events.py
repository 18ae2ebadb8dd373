"""``wfe events publish``: store an event for the workflows waiting for it.

The event is stored and queued; a worker (``wfe worker``, or any host on the same store)
delivers it to the steps waiting for its name and key, including steps that start waiting
later as of a time at or before its effective date.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from wfe_host.cli.host_factory import build_client, run_async
from wfe_host.cli.state import cli_state

__all__ = ["events_group", "parse_data", "parse_effective_date"]


def parse_data(text: str | None) -> Any:
    """The event data from its JSON text (``-``: read standard input); ``None`` when absent.

    Raises :class:`click.BadParameter` for invalid JSON.
    """
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at position {exc.pos}); a string needs JSON quotes, "
            "e.g. '\"yes\"'"
        ) from exc


def parse_effective_date(text: str | None) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime; one without an offset is local
    time (as a user typing it means). Raises :class:`click.BadParameter`."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"expected an ISO 8601 date-time such as 2026-01-31T09:30:00+00:00, got {text!r}"
        ) from exc
    # astimezone() on a naive value reads it as local time.
    return value.astimezone(UTC)


@click.group("events")
def events_group() -> None:
    """Publish events to workflows waiting for them."""


@events_group.command("publish")
@click.argument("name")
@click.argument("key")
@click.argument("data", required=False, callback=lambda _ctx, _param, value: parse_data(value))
@click.option(
    "--effective-date",
    metavar="ISO",
    default=None,
    callback=lambda _ctx, _param, value: parse_effective_date(value),
    help="When the event happened (ISO 8601; local time without an offset); default: now. "
    "Steps that start waiting for it later receive it if they wait as of an earlier time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the event as JSON, not its id.")
@click.pass_context
def publish_command(
    ctx: click.Context,
    name: str,
    key: str,
    data: Any,
    effective_date: datetime | None,
    as_json: bool,
) -> None:
    """Publish the event NAME with KEY and optional DATA (JSON text; - reads stdin).

    Prints the new event's id. A worker delivers it to the workflows waiting for NAME and KEY.

    \b
    Example:
      wfe events publish approval order-42 '{"approved": true}'
    """
    payload, when = data, effective_date  # parsed by the parameters' callbacks
    client, _ = build_client(cli_state(ctx))

    async def main() -> str:
        async with client:
            return await client.publish_event(name, key, data=payload, effective_date=when)

    event_id = run_async(main)
    if as_json:
        record = {
            "id": event_id,
            "name": name,
            "key": key,
            "data": payload,
            "effective_date": None if when is None else when.isoformat(),
        }
        click.echo(json.dumps(record, indent=2, default=str))
        return
    click.echo(event_id)
