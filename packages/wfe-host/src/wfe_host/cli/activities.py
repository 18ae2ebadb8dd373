"""``wfe activities take|complete|fail|release``: serve activities from a shell or any
language that can run a command.

A worker takes an activity (its token and parameters), does the work, and completes or
fails it with the token. The command runs no workflow: a worker process on the same store
(``wfe worker``, or any host) carries the workflow on.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from wfe_host.cli.events import parse_data
from wfe_host.cli.host_factory import build_client, run_async
from wfe_host.cli.state import cli_state

if TYPE_CHECKING:
    from wfe_core.models import PendingActivity

__all__ = ["NOTHING_PENDING", "activities_group"]

#: Exit status of ``wfe activities take`` when no activity came within ``--wait``.
NOTHING_PENDING = 3


@click.group("activities")
def activities_group() -> None:
    """Take and complete activities: work the workflows hand to external workers."""


@activities_group.command("take")
@click.argument("name")
@click.option(
    "--worker",
    "worker_id",
    required=True,
    envvar="WFE_ACTIVITY_WORKER",
    show_envvar=True,
    help="Who takes it (shown on the claim, and in logs).",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    envvar="WFE_ACTIVITY_WAIT",
    show_envvar=True,
    help="Seconds to wait for an activity to appear.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    envvar="WFE_ACTIVITY_LEASE",
    show_envvar=True,
    help="Seconds the activity stays yours; after that another worker may take it and "
    "your token is refused.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the activity as one JSON object.")
@click.pass_context
def take_command(
    ctx: click.Context, name: str, worker_id: str, wait: float, lease: float, as_json: bool
) -> None:
    """Take the oldest pending activity NAME.

    Prints its token on the first line and its parameters (JSON) on the second; with
    --json, one object with "token", "activity", "parameters", "workflow_id" and
    "token_expiry". When none came within --wait, prints nothing (null with --json) and
    exits with status 3.

    \b
    Example:
      wfe activities take charge-card --worker w1 --wait 30 --json
    """
    client, _ = build_client(cli_state(ctx))

    async def main() -> PendingActivity | None:
        async with client:
            return await client.get_pending_activity(name, worker_id, wait, lease=lease)

    pending = run_async(main)
    if pending is None:
        if as_json:
            click.echo("null")
        click.echo(f"no pending activity {name!r}", err=True)
        sys.exit(NOTHING_PENDING)
    if as_json:
        record = {
            "token": pending.token,
            "activity": pending.activity_name,
            "parameters": pending.parameters,
            "workflow_id": pending.workflow_id,
            "token_expiry": pending.token_expiry.isoformat(),
        }
        click.echo(json.dumps(record, indent=2, default=str))
        return
    click.echo(pending.token)
    click.echo(json.dumps(pending.parameters, default=str))


@activities_group.command("complete")
@click.argument("token")
@click.argument("data", required=False, callback=lambda _ctx, _param, value: parse_data(value))
@click.pass_context
def complete_command(ctx: click.Context, token: str, data: Any) -> None:
    """Complete the activity taken with TOKEN, with the result DATA (JSON text; - reads
    stdin; none: null).

    Fails (status 1) when the token is stale: its lease lapsed and another worker took the
    activity, or the activity is done or timed out.
    """
    result = data  # parsed by the argument's callback
    client, _ = build_client(cli_state(ctx))

    async def main() -> None:
        async with client:
            await client.submit_activity_success(token, result)

    run_async(main)
    click.echo("completed")


@activities_group.command("fail")
@click.argument("token")
@click.argument("message")
@click.pass_context
def fail_command(ctx: click.Context, token: str, message: str) -> None:
    """Fail the activity taken with TOKEN with MESSAGE: its step fails, and its error
    behaviour (retry, terminate, ...) applies."""
    client, _ = build_client(cli_state(ctx))

    async def main() -> None:
        async with client:
            await client.submit_activity_failure(token, message)

    run_async(main)
    click.echo("failed")


@activities_group.command("release")
@click.argument("token")
@click.pass_context
def release_command(ctx: click.Context, token: str) -> None:
    """Hand the activity taken with TOKEN back, so another worker can take it at once."""
    client, _ = build_client(cli_state(ctx))

    async def main() -> bool:
        async with client:
            return await client.release_activity(token)

    if not run_async(main):
        raise click.ClickException("the token is no longer the activity's claim")
    click.echo("released")
