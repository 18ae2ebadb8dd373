"""``wfe purge``: delete finished workflow instances older than a given age."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from wfe_core.models import WorkflowStatus
from wfe_host.cli.workflows import run_on_client

if TYPE_CHECKING:
    from datetime import datetime

    from wfe_host.client import WorkflowClient

__all__ = ["parse_age", "purge_command"]

_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1)}
_UNITS |= {"m": timedelta(minutes=1), "s": timedelta(seconds=1)}
_AGE = re.compile(r"(?:(\d+)([wdhms]))+")
_PART = re.compile(r"(\d+)([wdhms])")
#: The oldest age ``--older-than`` takes (a larger one would reach before year 1).
MAX_AGE = timedelta(days=365 * 100)
#: Statuses of finished instances, the only ones purge deletes.
FINISHED = (WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED, WorkflowStatus.FAILED)
_PAGE = 500


def parse_age(text: str) -> timedelta:
    """An age such as ``7d``, ``12h``, ``1d12h``, ``30m``, ``2w`` (weeks, days, hours,
    minutes, seconds); :class:`click.BadParameter` otherwise."""
    compact = text.strip().lower()
    if not _AGE.fullmatch(compact):
        raise click.BadParameter(f"{text!r} is not an age such as 7d, 12h, 1d12h, 30m or 2w")
    age = sum((int(n) * _UNITS[unit] for n, unit in _PART.findall(compact)), timedelta())
    if age > MAX_AGE:
        raise click.BadParameter(f"{text!r} is more than 100 years")
    return age


def _age_option(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    return parse_age(value)


async def _count(client: WorkflowClient, statuses: list[WorkflowStatus], cutoff: datetime) -> int:
    # Pages through the instances of each status: a dry run reads, it never deletes.
    found = 0
    for status in statuses:
        skip = 0
        while True:
            page = await client.list_workflows(status=status, skip=skip, take=_PAGE)
            found += sum(
                1 for i in page.items if i.complete_time is not None and i.complete_time < cutoff
            )
            skip += len(page.items)
            if not page.items or skip >= page.total:
                break
    return found


@click.command("purge")
@click.option(
    "--older-than",
    metavar="AGE",
    required=True,
    callback=_age_option,
    help="Delete instances that finished longer ago than this (e.g. 7d, 12h, 1d12h, 2w).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([str(s) for s in FINISHED]),
    help="Only instances with this status; repeatable. Default: complete, terminated, failed.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.pass_context
def purge_command(
    ctx: click.Context, older_than: timedelta, statuses: tuple[str, ...], dry_run: bool
) -> None:
    """Delete finished workflow instances (with their subscriptions and errors, and their
    search index entries) that finished more than --older-than ago.

    Runnable and suspended instances are never deleted, however old. Prints how many
    instances were deleted (or, with --dry-run, would be).
    """
    wanted = [WorkflowStatus(s) for s in statuses] or list(FINISHED)

    async def body(client: WorkflowClient) -> int:
        if dry_run:
            return await _count(client, wanted, client.clock.now() - older_than)
        return await client.purge(older_than=older_than, statuses=wanted)

    count = run_on_client(ctx, body)
    names = ", ".join(str(s) for s in wanted)
    verb = "would delete" if dry_run else "deleted"
    noun = "instance" if count == 1 else "instances"
    click.echo(f"{verb} {count} {noun} ({names}) finished more than {older_than} ago")
