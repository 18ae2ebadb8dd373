"""``wfe workflows``: list stored workflow instances, show one, suspend, resume or terminate it.

These commands open a :class:`~wfe_host.WorkflowClient`, which runs no workflows: they read
and change stored state, and the workers (``wfe worker``, or any host on the same store) do
the rest. Output is plain text when stdout is not a terminal (colours only on a TTY, never
with ``NO_COLOR``), and JSON with ``--json``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from wfe_core.errors import WorkflowNotFoundError
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.serialization import to_primitive
from wfe_host.cli.bounds import MAX_RUN_TIMEOUT, MAX_SKIP, MAX_TAKE
from wfe_host.cli.host_factory import build_client, not_found, run_async
from wfe_host.cli.pointers import ordered_pointers
from wfe_host.cli.state import cli_state
from wfe_host.cli.terminal import printable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from wfe_core.models import ExecutionError, ExecutionPointer, Page, WorkflowInstance
    from wfe_host.client import WorkflowClient
    from wfe_host.runtime.stuck import StuckWorkflow

__all__ = [
    "error_record",
    "filter_options",
    "format_time",
    "instance_summary",
    "page_options",
    "print_page",
    "print_stuck",
    "resolve_id",
    "run_on_client",
    "workflows_group",
]

#: How many of the newest instances ``wfe workflows show`` looks for an id prefix in.
MAX_PREFIX_SCAN = 10_000
_SCAN_PAGE = 500
#: How many of the instances an ambiguous prefix matches the error names.
_MATCHES_SHOWN = 10

#: Colours of statuses on a terminal (workflow and pointer statuses share names).
_STATUS_COLOURS: dict[str, str] = {
    str(WorkflowStatus.RUNNABLE): "cyan",
    str(WorkflowStatus.SUSPENDED): "yellow",
    str(WorkflowStatus.COMPLETE): "green",
    str(WorkflowStatus.TERMINATED): "magenta",
    str(WorkflowStatus.FAILED): "red",
    str(PointerStatus.RUNNING): "cyan",
    str(PointerStatus.SLEEPING): "blue",
    str(PointerStatus.WAITING_FOR_EVENT): "blue",
    str(PointerStatus.COMPENSATED): "magenta",
    str(PointerStatus.CANCELLED): "magenta",
}


# -- formatting ----------------------------------------------------------------------------------


def format_time(value: datetime | None) -> str:
    """``2026-11-24T01:25:02Z`` (UTC, whole seconds), or ``-``."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _style_status(text: str) -> str:
    colour = _STATUS_COLOURS.get(text.strip())
    if colour is None or os.environ.get("NO_COLOR"):
        return text
    # click.echo drops the escape codes when stdout is not a terminal.
    return click.style(text, fg=colour)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Mapping[int, Callable[[str], str]] | None = None,
) -> str:
    """A plain table whose cells are padded before being styled, so colours keep columns.

    Cells are shown :func:`printable`: they hold what workflows stored (step names, errors).
    """
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(width) if index < len(row) - 1 else cell
            style = (styles or {}).get(index)
            cells.append(style(padded) if style is not None else padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _one_line(text: str | None, limit: int = 80) -> str:
    if not text:
        return "-"
    first = text.strip().splitlines()[0] if text.strip() else "-"
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _json_dump(value: Any) -> str:
    # default=str: data a step stored may hold values JSON has no type for.
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def instance_summary(instance: WorkflowInstance) -> dict[str, Any]:
    """``instance`` without its pointers, as JSON-ready primitives (``workflows list --json``)."""
    record: dict[str, Any] = to_primitive(instance)
    record.pop("pointers", None)
    return record


def error_record(error: ExecutionError) -> dict[str, Any]:
    """``error`` as JSON-ready primitives."""
    record: dict[str, Any] = to_primitive(error)
    return record


def _step_label(pointer: ExecutionPointer) -> str:
    name = pointer.step_name
    return f"{pointer.step_id} {name}" if name else str(pointer.step_id)


def _pointer_detail(pointer: ExecutionPointer) -> str:
    """What an unfinished pointer waits for."""
    if pointer.status == PointerStatus.WAITING_FOR_EVENT and pointer.event_name:
        return f"event {pointer.event_name}/{pointer.event_key}"
    if pointer.status == PointerStatus.SLEEPING and pointer.sleep_until is not None:
        return f"until {format_time(pointer.sleep_until)}"
    if pointer.context_item is not None:
        return f"item {_one_line(json.dumps(to_primitive(pointer.context_item), default=str), 30)}"
    return ""


def print_page(page: Page[WorkflowInstance], *, as_json: bool, empty: str = "no workflows") -> None:
    """Print a page of instances as a table (with a "1-50 of 120" line on stderr when there is
    more), or as JSON: ``{"total", "skip", "take", "items"}``, items without their pointers."""
    skip = page.skip
    if as_json:
        click.echo(
            _json_dump(
                {
                    "total": page.total,
                    "skip": page.skip,
                    "take": page.take,
                    "items": [instance_summary(i) for i in page.items],
                }
            )
        )
        return
    if not page.items:
        what = empty if page.total == 0 else f"{empty} after the first {skip}"
        click.echo(f"{what} (of {page.total})" if page.total else what, err=True)
        return
    rows = [
        [
            i.id,
            i.definition_id,
            str(i.version),
            str(i.status),
            i.reference or "-",
            format_time(i.create_time),
            format_time(i.complete_time),
        ]
        for i in page.items
    ]
    headers = ["ID", "DEFINITION", "VERSION", "STATUS", "REFERENCE", "CREATED", "COMPLETED"]
    click.echo(_table(headers, rows, {3: _style_status}))
    shown_to = skip + len(page.items)
    if shown_to < page.total or skip:
        more = f"; --skip {shown_to} for more" if shown_to < page.total else ""
        click.echo(f"{skip + 1}-{shown_to} of {page.total}{more}", err=True)


def print_stuck(page: Page[StuckWorkflow], *, as_json: bool) -> None:
    """Print stuck workflows as a table with why each is stuck (its last error), or JSON."""
    if as_json:
        items = []
        for item in page.items:
            record = instance_summary(item.instance)
            error = item.last_error
            record["last_error"] = None if error is None else error_record(error)
            items.append(record)
        click.echo(
            _json_dump({"total": page.total, "skip": page.skip, "take": page.take, "items": items})
        )
        return
    if not page.items:
        click.echo("no stuck workflows" + (f" (of {page.total})" if page.total else ""), err=True)
        return
    rows = [
        [
            i.instance.id,
            i.instance.definition_id,
            str(i.instance.version),
            format_time(i.instance.next_execution),
            _one_line(i.last_error.message, 100) if i.last_error else "-",
        ]
        for i in page.items
    ]
    click.echo(_table(["ID", "DEFINITION", "VERSION", "DUE SINCE", "LAST ERROR"], rows, {}))
    shown_to = page.skip + len(page.items)
    if shown_to < page.total or page.skip:
        more = f"; --skip {shown_to} for more" if shown_to < page.total else ""
        click.echo(f"{page.skip + 1}-{shown_to} of {page.total}{more}", err=True)


# -- commands ------------------------------------------------------------------------------------


def run_on_client(
    ctx: click.Context,
    body: Callable[[WorkflowClient], Awaitable[Any]],
    workflow_id: str | None = None,
) -> Any:
    """Open a client (it runs no workers), run ``body`` on it; an unknown ``workflow_id`` is one
    error line."""
    client, _ = build_client(cli_state(ctx))

    async def main() -> Any:
        async with client:
            return await body(client)

    try:
        return run_async(main)
    except WorkflowNotFoundError as exc:
        if workflow_id is None:
            raise
        raise not_found(workflow_id) from exc


async def resolve_id(client: WorkflowClient, text: str) -> str:
    """The id of the workflow ``text`` names: its whole id, or a prefix of exactly one id
    among the newest :data:`MAX_PREFIX_SCAN` instances (an ambiguous or unknown prefix is
    one error line)."""
    try:
        await client.get_workflow(text)
    except WorkflowNotFoundError:
        if not text:
            raise
    else:
        return text
    matches: dict[str, str] = {}
    skip = 0
    total = 0
    while skip < MAX_PREFIX_SCAN:
        page = await client.list_workflows(skip=skip, take=_SCAN_PAGE)
        total = page.total
        for item in page.items:
            if item.id.startswith(text):
                matches[item.id] = item.definition_id
        skip += len(page.items)
        if len(page.items) < _SCAN_PAGE or skip >= page.total:
            break
    if len(matches) == 1:
        return next(iter(matches))
    if not matches and skip < total:
        raise click.ClickException(
            f"no workflow with id {text!r} (no id starts with it among the newest {skip}; "
            "give the whole id)"
        )
    if not matches:
        raise WorkflowNotFoundError(text)
    shown = [f"{wid} ({printable(name)})" for wid, name in list(matches.items())[:_MATCHES_SHOWN]]
    more = len(matches) - len(shown)
    raise click.ClickException(
        f"id prefix {text!r} matches {len(matches)} workflows: {', '.join(shown)}"
        + (f" and {more} more" if more else "")
        + "; give more of the id"
    )


F = TypeVar("F", bound="Callable[..., Any]")

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def filter_options(command: F) -> F:
    """``--status``, ``--definition`` and ``--reference``: the filters every listing takes."""
    for option in reversed(
        (
            click.option(
                "--status",
                type=click.Choice([str(s) for s in WorkflowStatus], case_sensitive=False),
                default=None,
                help="Only instances with this status.",
            ),
            click.option(
                "--definition",
                "definition_id",
                metavar="ID",
                default=None,
                help="Only this definition.",
            ),
            click.option("--reference", default=None, help="Only instances with this reference."),
        )
    ):
        command = option(command)
    return command


def page_options(*, take: int) -> Callable[[F], F]:
    """``--skip`` and ``--take`` (``take`` by default), bounded as the stores can page."""

    def decorate(command: F) -> F:
        command = click.option(
            "--take",
            type=click.IntRange(min=1, max=MAX_TAKE),
            default=take,
            show_default=True,
            help="Show at most this many.",
        )(command)
        return click.option(
            "--skip",
            type=click.IntRange(min=0, max=MAX_SKIP),
            default=0,
            show_default=True,
            help="Skip this many.",
        )(command)

    return decorate


@click.group("workflows")
def workflows_group() -> None:
    """List stored workflow instances, show one, or suspend, resume or terminate it.

    They are read from (and changed in) the configured persistence: by default
    .wfe/wfe.db in the current directory when wfe-sqlite is installed.
    """


@workflows_group.command("list")
@filter_options
@page_options(take=50)
@_json_option
@click.option(
    "--stuck",
    is_flag=True,
    help="Only workflows that are due but not moving (runnable, due for longer than "
    "--overdue, leased by no worker), with the last error of each: a definition version no "
    "worker has registered, or no worker running.",
)
@click.option(
    "--overdue",
    type=click.FloatRange(min=0, max=MAX_RUN_TIMEOUT),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With --stuck: how long past its due time a workflow counts as stuck.",
)
@click.pass_context
def list_command(
    ctx: click.Context,
    status: str | None,
    definition_id: str | None,
    reference: str | None,
    skip: int,
    take: int,
    as_json: bool,
    stuck: bool,
    overdue: float,
) -> None:
    """List workflow instances, newest first.

    --json prints {"total", "skip", "take", "items"}, each item an instance without its
    execution pointers (with --stuck: also "last_error", the last error recorded on it).
    """
    if stuck:
        if status is not None and status.lower() != str(WorkflowStatus.RUNNABLE):
            raise click.UsageError("--stuck lists runnable workflows; it takes no other --status")
        if reference is not None:
            raise click.UsageError("--stuck does not take --reference")

        async def stuck_body(client: WorkflowClient) -> Page[StuckWorkflow]:
            return await client.list_stuck_workflows(
                overdue=timedelta(seconds=overdue),
                definition_id=definition_id,
                skip=skip,
                take=take,
            )

        print_stuck(run_on_client(ctx, stuck_body), as_json=as_json)
        return

    async def body(client: WorkflowClient) -> Page[WorkflowInstance]:
        return await client.list_workflows(
            status=None if status is None else WorkflowStatus(status.lower()),
            definition_id=definition_id,
            reference=reference,
            skip=skip,
            take=take,
        )

    print_page(run_on_client(ctx, body), as_json=as_json)


@workflows_group.command("show")
@click.argument("workflow_id", metavar="ID")
@click.option("--tracebacks", is_flag=True, help="Also print the errors' tracebacks.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also list the engine's internal steps (a definition format's plumbing).",
)
@_json_option
@click.pass_context
def show_command(
    ctx: click.Context, workflow_id: str, tracebacks: bool, show_all: bool, as_json: bool
) -> None:
    """Show a workflow instance: status, data, steps and errors.

    ID may be the start of an id, if it is the start of one only. Steps are listed in the
    order they started, without the engine's internal ones unless --all. --json prints the
    stored instance (with all its execution pointers) plus an "errors" list.
    """

    async def body(client: WorkflowClient) -> tuple[WorkflowInstance, list[ExecutionError]]:
        found = await resolve_id(client, workflow_id)
        instance = await client.get_workflow(found)
        errors = await client.persistence.get_errors(found)
        return instance, list(errors)

    instance, errors = run_on_client(ctx, body, workflow_id)
    if as_json:
        record: dict[str, Any] = to_primitive(instance)
        record["errors"] = [error_record(e) for e in errors]
        click.echo(_json_dump(record))
        return
    click.echo(_render(instance, errors, tracebacks=tracebacks, show_all=show_all))


def _render(
    instance: WorkflowInstance,
    errors: Sequence[ExecutionError],
    *,
    tracebacks: bool = False,
    show_all: bool = False,
) -> str:
    fields = [
        ("Workflow", instance.id),
        ("Definition", f"{instance.definition_id} v{instance.version}"),
        ("Status", str(instance.status)),
        ("Reference", instance.reference or "-"),
        ("Description", instance.description or "-"),
        ("Created", format_time(instance.create_time)),
        ("Completed", format_time(instance.complete_time)),
        ("Next run", format_time(instance.next_execution)),
    ]
    if instance.parent_workflow_id:
        fields.append(("Parent", instance.parent_workflow_id))
    width = max(len(label) for label, _ in fields)
    lines = [
        f"{label.ljust(width)}  {_style_status(value) if label == 'Status' else printable(value)}"
        for label, value in fields
    ]
    lines += ["", "Data:", _json_dump(to_primitive(instance.data))]
    lines += ["", "Steps:"]
    pointers = ordered_pointers(instance, include_internal=show_all)
    if pointers:
        details = [_pointer_detail(p) for p in pointers]
        # The column only when something waits: finished workflows have nothing to show in it.
        waiting = any(details)
        rows = [
            [
                _step_label(p),
                str(p.status),
                format_time(p.start_time),
                format_time(p.end_time),
                str(p.attempt),
                *([detail or "-"] if waiting else []),
                _one_line(p.error, 60),
            ]
            for p, detail in zip(pointers, details, strict=True)
        ]
        headers = ["STEP", "STATUS", "STARTED", "ENDED", "ATTEMPT"]
        headers += [*(["WAITING FOR"] if waiting else []), "ERROR"]
        lines.append(_table(headers, rows, {1: _style_status}))
    else:
        lines.append("(none yet)")
    hidden = len(instance.pointers) - len(pointers)
    if hidden:
        lines.append(
            f"({hidden} internal step{'s' if hidden != 1 else ''} not shown; --all shows them)"
        )
    if errors:
        lines += ["", "Errors:"]
        rows = [
            [
                format_time(e.time),
                e.step_name or ("-" if e.step_id is None else str(e.step_id)),
                e.error_type or "-",
                _one_line(e.message, 100),
            ]
            for e in errors
        ]
        lines.append(_table(["TIME", "STEP", "TYPE", "MESSAGE"], rows))
        if tracebacks:
            for error in errors:
                if error.traceback:
                    lines += [
                        "",
                        f"Traceback of {printable(str(error.step_name or error.step_id))} at "
                        f"{format_time(error.time)}:",
                        "\n".join(printable(line) for line in error.traceback.rstrip().split("\n")),
                    ]
    return "\n".join(lines)


def _control_command(
    name: str,
    verb: str,
    method: Callable[[WorkflowClient, str], Awaitable[bool]],
    expected: str,
    doc: str,
) -> click.Command:
    """``wfe workflows NAME ID``: one state change, an error line when it does not apply."""

    @click.command(name, help=doc)
    @click.argument("workflow_id", metavar="ID")
    @click.pass_context
    def command(ctx: click.Context, workflow_id: str) -> None:
        async def body(client: WorkflowClient) -> WorkflowStatus | None:
            if await method(client, workflow_id):
                return None
            # Read again to say why: the change did not apply to the status it has now.
            return (await client.get_workflow(workflow_id)).status

        status = run_on_client(ctx, body, workflow_id)
        if status is not None:
            raise click.ClickException(
                f"workflow {workflow_id} is {status}; only {expected} workflows can be {verb}"
            )
        click.echo(f"{verb} {workflow_id}")

    return command


workflows_group.add_command(
    _control_command(
        "suspend",
        "suspended",
        lambda client, wid: client.suspend_workflow(wid),
        "runnable",
        "Suspend a runnable workflow: no step of it starts until it is resumed (running "
        "steps finish).",
    )
)
workflows_group.add_command(
    _control_command(
        "resume",
        "resumed",
        lambda client, wid: client.resume_workflow(wid),
        "suspended",
        "Resume a suspended workflow.",
    )
)
workflows_group.add_command(
    _control_command(
        "terminate",
        "terminated",
        lambda client, wid: client.terminate_workflow(wid),
        "unfinished (runnable or suspended)",
        "Terminate a workflow that has not finished: its waiting and sleeping steps are "
        "cancelled. A pass running on a worker is waited for (up to twice the lease time).",
    )
)
