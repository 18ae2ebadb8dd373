"""``wfe search``: find workflow instances by text and filters.

Through the configured search provider (``--search http://localhost:9200`` for OpenSearch),
else by scanning persistence. Filters: ``--status``, ``--definition``, ``--reference``,
``--created-after`` / ``--created-before``, ``--completed-after`` / ``--completed-before``
and ``--data PATH=VALUE`` (repeatable).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from wfe_core.models import WorkflowStatus
from wfe_host.cli.workflows import filter_options, page_options, print_page, run_on_client

if TYPE_CHECKING:
    from wfe_core.models import Page, WorkflowInstance
    from wfe_host.client import WorkflowClient

__all__ = ["search_command"]


def _when(value: datetime | None) -> datetime | None:
    # click parses ISO dates as naive: they mean UTC, as every time wfe prints does.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _data_filters(values: tuple[str, ...]) -> dict[str, str]:
    filters: dict[str, str] = {}
    for value in values:
        path, sep, wanted = value.partition("=")
        if not sep or not path.strip(". "):
            raise click.BadParameter(
                f"{value!r} is not PATH=VALUE (e.g. customer.city=Oslo)", param_hint="'--data'"
            )
        filters[f"data.{path.strip()}"] = wanted
    return filters


_DATE = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"])


@click.command("search")
@click.argument("text", required=False, default=None)
@filter_options
@click.option(
    "--created-after", type=_DATE, metavar="TIME", default=None, help="Created at or after (UTC)."
)
@click.option(
    "--created-before", type=_DATE, metavar="TIME", default=None, help="Created before (UTC)."
)
@click.option(
    "--completed-after",
    type=_DATE,
    metavar="TIME",
    default=None,
    help="Finished at or after (UTC).",
)
@click.option(
    "--completed-before", type=_DATE, metavar="TIME", default=None, help="Finished before (UTC)."
)
@click.option(
    "--data",
    "data",
    metavar="PATH=VALUE",
    multiple=True,
    help="Only instances whose data holds VALUE at the dotted PATH (repeatable).",
)
@page_options(take=20)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def search_command(
    ctx: click.Context,
    text: str | None,
    status: str | None,
    definition_id: str | None,
    reference: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    completed_after: datetime | None,
    completed_before: datetime | None,
    data: tuple[str, ...],
    skip: int,
    take: int,
    as_json: bool,
) -> None:
    """Find workflow instances by TEXT (words of their reference, description, definition
    and data) and filters, best match first, newest first among equals.

    Uses the configured search provider (e.g. --search http://localhost:9200, or
    WFE_SEARCH, for OpenSearch), else scans the persistence. --json prints {"total",
    "skip", "take", "items"}, each item an instance without its execution pointers.
    """
    filters: dict[str, Any] = {
        "status": None if status is None else WorkflowStatus(status.lower()),
        "definition_id": definition_id,
        "reference": reference,
        "created_after": _when(created_after),
        "created_before": _when(created_before),
        "completed_after": _when(completed_after),
        "completed_before": _when(completed_before),
        **_data_filters(data),
    }
    filters = {key: value for key, value in filters.items() if value is not None}

    async def body(client: WorkflowClient) -> Page[WorkflowInstance]:
        return await client.search(text, filters=filters, skip=skip, take=take)

    print_page(run_on_client(ctx, body), as_json=as_json, empty="no matching workflows")
