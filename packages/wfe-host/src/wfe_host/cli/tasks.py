"""``wfe tasks list|answer``: the user tasks (human-in-the-loop steps) waiting for people."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from wfe_host.cli.host_factory import build_client, run_async
from wfe_host.cli.state import cli_state

if TYPE_CHECKING:
    from wfe_core.models import OpenUserAction

__all__ = ["parse_value", "tasks_group"]


def parse_value(text: str) -> Any:
    """An answer as typed: JSON when it is JSON (``42``, ``true``, ``"yes"``), else the
    text itself (``yes``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@click.group("tasks")
def tasks_group() -> None:
    """List and answer user tasks: workflow steps waiting for a person's decision."""


def _record(action: OpenUserAction) -> dict[str, Any]:
    return {
        "key": action.key,
        "prompt": action.prompt,
        "assigned_to": action.assigned_to,
        "options": [{"value": o.value, "label": o.label} for o in action.options],
        "workflow_id": action.workflow_id,
        "created": action.created.isoformat(),
    }


@tasks_group.command("list")
@click.option("--workflow", "workflow_id", default=None, help="Only this workflow's tasks.")
@click.option(
    "--assigned-to",
    default=None,
    envvar="WFE_USER",
    show_envvar=True,
    help="Only the tasks assigned to this user.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def list_command(
    ctx: click.Context, workflow_id: str | None, assigned_to: str | None, as_json: bool
) -> None:
    """The open user tasks, oldest first: key, assignee, prompt and options."""
    client, _ = build_client(cli_state(ctx))

    async def main() -> list[OpenUserAction]:
        async with client:
            return await client.get_open_user_actions(workflow_id, assigned_to)

    actions = run_async(main)
    if as_json:
        click.echo(json.dumps([_record(a) for a in actions], indent=2, default=str))
        return
    if not actions:
        click.echo("no open user tasks", err=True)
        return
    for action in actions:
        options = ", ".join(
            f"{json.dumps(o.value, default=str)} ({o.label})" for o in action.options
        )
        click.echo(f"{action.key}  [{action.assigned_to or 'unassigned'}]  {action.prompt}")
        click.echo(f"    options: {options or '(any value)'}")


@tasks_group.command("answer")
@click.argument("key")
@click.argument("value")
@click.option(
    "--user",
    required=True,
    envvar="WFE_USER",
    show_envvar=True,
    help="Who answers (recorded with the answer).",
)
@click.pass_context
def answer_command(ctx: click.Context, key: str, value: str, user: str) -> None:
    """Answer the user task KEY with VALUE, one of its options' values (JSON, or plain
    text for a string).

    \b
    Example:
      wfe tasks answer 3f2a...e1.9c0d...7b yes --user bob
    """
    answer = parse_value(value)
    client, _ = build_client(cli_state(ctx))

    async def main() -> str:
        async with client:
            return await client.publish_user_action(key, user, answer)

    click.echo(run_async(main))
