"""``wfe run FILE``: run a workflow file in this process, with live progress.

The file is loaded through the definition format registered for its suffix (YAML with
wfe-yaml installed). The run is stored in the CLI's store (``.wfe/wfe.db`` with wfe-sqlite
installed), tagged with a reference made of the workflow, a hash of its files and the given
values, so running the same command again after the process died resumes the unfinished
instance instead of starting over (``--new`` starts a new one anyway).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import click

from wfe_core.errors import InvalidInputError, WfeError, WorkflowTimeoutError
from wfe_core.models import WorkflowStatus
from wfe_core.spi import UnreadableFileError, processes, read_regular_file
from wfe_host.cli.bounds import MAX_RUN_TIMEOUT, seconds_callback
from wfe_host.cli.host_factory import build_host, describe_store, run_async
from wfe_host.cli.progress import Progress, format_seconds
from wfe_host.cli.run_summary import declared_outputs, format_value, run_summary
from wfe_host.cli.signals import exit_status, stopping_line, until_signalled
from wfe_host.cli.state import cli_state
from wfe_host.cli.terminal import printable, use_color
from wfe_host.runtime.holders import describe_holder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from wfe_core.models import (
        ExecutionError,
        LifecycleEvent,
        WorkflowDefinition,
        WorkflowInstance,
    )
    from wfe_host.cli.state import CliState
    from wfe_host.host import WorkflowHost

#: Exit status of a workflow that failed or was terminated.
EXIT_FAILED = 1
#: Exit status of a workflow that was suspended (resume it, then run the command again).
EXIT_SUSPENDED = 3
#: Exit status when ``--timeout`` ran out before the workflow finished (it stays stored).
EXIT_TIMEOUT = 4
# Stopped by SIGINT or SIGTERM: 128 + the signal's number (130, 143), see signals.exit_status.
#: Reference prefix of instances started by ``wfe run``.
REFERENCE_PREFIX = "wfe-run"


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` → ``{"a": "1", "b": "x=y"}``; a pair without ``=`` is a usage
    error naming the option."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        values[key.strip()] = value
    return values


def load_file(
    state: CliState, file: Path, values: Mapping[str, str] | None
) -> list[WorkflowDefinition]:
    """Every definition in ``file``, through the definition format of its suffix."""
    if not file.exists():
        raise click.ClickException(f"no such file: {file}")
    # Anything else that is not a regular file (a FIFO, /dev/zero) is refused by the format's
    # loader with the reason, before it reads a byte.
    fmt = state.get_registry().definition_format_for(file)
    definitions = list(fmt.spec.load(file, values))
    if not definitions:
        raise click.ClickException(f"{file} defines no workflow")
    return definitions


def check_inputs(definition: WorkflowDefinition, inputs: Mapping[str, str]) -> None:
    """Refuse ``--input`` keys the definition does not declare (when it declares any), each
    with the closest declared name."""
    if not definition.inputs:
        return
    problems = []
    for key in inputs:
        if key in definition.inputs:
            continue
        close = difflib.get_close_matches(key, definition.inputs, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"unknown input {key!r}{hint}")
    if problems:
        declared = ", ".join(definition.inputs)
        raise click.BadParameter(
            f"{'; '.join(problems)}; {definition.id} declares: {declared}",
            param_hint="--input",
        )


def choose(
    definitions: Sequence[WorkflowDefinition], workflow_id: str | None
) -> WorkflowDefinition:
    """The definition ``--workflow`` names (the latest version), else the file's first."""
    if workflow_id is None:
        return definitions[0]
    matching = [d for d in definitions if d.id == workflow_id]
    if not matching:
        known = ", ".join(sorted({d.id for d in definitions}))
        raise click.ClickException(f"no workflow {workflow_id!r} in the file (it has: {known})")
    return max(matching, key=lambda d: d.version)


def run_reference(
    file: Path,
    definitions: Sequence[WorkflowDefinition],
    definition: WorkflowDefinition,
    values: Mapping[str, str],
    inputs: Mapping[str, str],
) -> str:
    """The reference that tells a re-run of the same command: the workflow, and a hash of
    its files (the file and those its steps came from) and of the values given."""
    files = {str(file.resolve())}
    for item in definitions:
        for step in item.steps:
            source = step.metadata.get("file") if isinstance(step.metadata, dict) else None
            if isinstance(source, str) and os.path.isfile(source):
                files.add(str(Path(source).resolve()))
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode())
        # The files were just loaded, so they are regular and small; reading them again
        # through the same guard keeps a file swapped for a FIFO meanwhile from hanging us.
        try:
            digest.update(read_regular_file(name))
        except UnreadableFileError as exc:
            raise click.ClickException(f"cannot read {name}: {exc}") from None
    digest.update(json.dumps([sorted(values.items()), sorted(inputs.items())]).encode())
    return f"{REFERENCE_PREFIX}:{definition.id}:v{definition.version}:{digest.hexdigest()[:16]}"


async def find_unfinished(
    host: WorkflowHost, definition_id: str, reference: str
) -> WorkflowInstance | None:
    """The newest runnable or suspended instance started by the same command."""
    for status in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED):
        page = await host.list_workflows(
            status=status, definition_id=definition_id, reference=reference, take=1
        )
        if page.items:
            return page.items[0]
    return None


async def _unfinished_runs(host: WorkflowHost, definition_id: str) -> list[WorkflowInstance]:
    """Runnable or suspended instances of ``definition_id`` started by ``wfe run``."""
    found: list[WorkflowInstance] = []
    prefix = f"{REFERENCE_PREFIX}:{definition_id}:"
    for status in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED):
        page = await host.list_workflows(status=status, definition_id=definition_id, take=1000)
        found += [i for i in page.items if (i.reference or "").startswith(prefix)]
    return found


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A workflow input (repeatable); converted to the declared type.",
)
@click.option(
    "--set",
    "-s",
    "values",
    multiple=True,
    metavar="KEY=VALUE",
    help="A load-time value for ${{ config.KEY }} / ((KEY)) (repeatable).",
)
@click.option(
    "--workflow",
    "-w",
    "workflow_id",
    default=None,
    help="Which workflow of the file to run (default: the first).",
)
@click.option(
    "--new",
    "new",
    is_flag=True,
    help="Start a new run even when an unfinished run of the same command exists.",
)
@click.option(
    "--timeout",
    type=float,
    callback=seconds_callback(MAX_RUN_TIMEOUT),
    default=None,
    metavar="SECONDS",
    help=f"Give up waiting after this many seconds (exit status {EXIT_TIMEOUT}; the run "
    "stays stored).",
)
@click.option(
    "--plain",
    is_flag=True,
    envvar="WFE_PLAIN",
    show_envvar=True,
    help="Plain lines even on a terminal (no colors, no status line).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON summary (status, outputs, steps) on stdout; progress goes to stderr.",
)
@click.pass_context
def run_command(
    ctx: click.Context,
    /,
    file: Path,
    inputs: tuple[str, ...],
    values: tuple[str, ...],
    workflow_id: str | None,
    new: bool,
    timeout: float | None,
    plain: bool,
    as_json: bool,
) -> None:
    """Run the workflow in FILE here and now, showing its progress.

    Prints the workflow's declared outputs when it completes. Exits 0 when the workflow
    completes, 1 when it fails or is terminated, 3 when it is suspended, 4 when --timeout ran
    out, 130 or 143 when stopped by SIGINT (Ctrl+C) or SIGTERM. Running the same
    command again resumes a run that did not finish (after a crash, kill or stop) when the
    store keeps it (the default .wfe/wfe.db with wfe-sqlite).
    """
    state = cli_state(ctx)
    given_inputs = parse_pairs(inputs, "--input")
    given_values = parse_pairs(values, "--set")
    definitions = load_file(state, file, given_values)
    definition = choose(definitions, workflow_id)
    check_inputs(definition, given_inputs)
    reference = run_reference(file, definitions, definition, given_values, given_inputs)
    host, resolved = build_host(state, warn_if_memory=False)
    stream = sys.stderr if as_json else sys.stdout
    view = View(
        tty=stream.isatty() and not plain,
        color=use_color(stream, plain=plain),
        err=as_json,
        as_json=as_json,
    )
    store = describe_store(resolved)

    # Cancelled by the first stop signal: the command stops following the run, and leaving
    # the host lets the running steps finish (shutdown_grace) and releases the leases, so
    # that running the command again resumes at once.
    # (A cancel scope belongs to the event loop: made in it, so a signal arriving before
    # that is kept in ``stop_asked``.)
    following: list[anyio.CancelScope] = []
    stop_asked: list[str] = []

    async def main() -> int | None:
        async with host:
            for item in definitions:
                host.register(item)
            scope = anyio.CancelScope()
            following.append(scope)
            if stop_asked:
                scope.cancel()
            with scope:
                return await _run(
                    host,
                    definition,
                    given_inputs,
                    reference,
                    new=new,
                    timeout=timeout,
                    view=view,
                    store=store,
                )
            return None

    def on_signal(name: str, count: int) -> bool:
        if count > 1:
            return True  # at once: the steps still running are cancelled (their processes killed)
        click.echo(
            f"wfe run: {name} received, {stopping_line(host)}; the run stays stored, run "
            "the same command again to resume it",
            err=True,
        )
        stop_asked.append(name)
        for scope in following:
            scope.cancel()
        return False

    # Kills the steps' processes if this process dies without stopping them (SIGKILL).
    with processes.watchdog():
        code, received = run_async(lambda: until_signalled(main, on_signal))
    if received:
        ctx.exit(exit_status(received[0]))
    assert code is not None
    ctx.exit(code)


@attrs.frozen
class View:
    """How ``wfe run`` shows the run: a status line (``tty``), colours, human lines on
    stderr instead of stdout (``err``), and a JSON summary at the end (``as_json``)."""

    tty: bool
    color: bool
    err: bool = False
    as_json: bool = False

    def echo(self, line: str, **styles: Any) -> None:
        """One human line, styled when colours are on."""
        text = click.style(line, **styles) if self.color and styles else line
        click.echo(text, err=self.err, color=self.color)


async def _run(
    host: WorkflowHost,
    definition: WorkflowDefinition,
    inputs: Mapping[str, str],
    reference: str,
    *,
    new: bool,
    timeout: float | None,
    view: View,
    store: str,
) -> int:
    events = host.lifecycle_events()
    try:
        return await _follow(
            host,
            definition,
            inputs,
            reference,
            events,
            new=new,
            timeout=timeout,
            view=view,
            store=store,
        )
    finally:
        closer = getattr(events, "aclose", None)
        if closer is not None:
            with anyio.CancelScope(shield=True):
                await closer()


async def _follow(
    host: WorkflowHost,
    definition: WorkflowDefinition,
    inputs: Mapping[str, str],
    reference: str,
    events: AsyncIterator[LifecycleEvent],
    *,
    new: bool,
    timeout: float | None,
    view: View,
    store: str,
) -> int:
    started = time.monotonic()
    existing = None if new else await find_unfinished(host, definition.id, reference)
    label = f"{printable(definition.id)} v{definition.version}"
    if existing is not None:
        workflow_id = existing.id
        view.echo(
            f"Resuming {label} (workflow {workflow_id}, started "
            f"{existing.create_time:%Y-%m-%d %H:%M:%S} UTC) in {store}"
        )
        holder = await host.lock.holder(workflow_id)
        # (This host's own workers may have taken it up already: nothing to say then.)
        if holder is not None and not holder.owner.startswith(f"{host.worker_id}/"):
            # Left by a run that was killed (its lease was not released): say why nothing
            # happens for a while, rather than wait in silence.
            view.echo(f"The run is {describe_holder(holder, host.clock.now())}")
        if existing.status == WorkflowStatus.SUSPENDED:
            await host.resume_workflow(workflow_id)
    else:
        data: dict[str, Any] = dict(inputs)
        if definition.prepare_input is not None:
            # Checked before anything changes, so a mistyped --input never supersedes a run.
            try:
                definition.prepare_input(data)
            except InvalidInputError as exc:
                hint = "; ".join(exc.problems)
                raise click.UsageError(f"{hint} (pass --input KEY=VALUE)") from exc
        # This host works on every due instance in the store, so an earlier unfinished run
        # of the same workflow (its files or values changed, or --new) would run alongside
        # this one, possibly on the new definition: a new run supersedes it.
        for stale in await _unfinished_runs(host, definition.id):
            await host.terminate_workflow(stale.id)
            view.echo(f"Terminated the unfinished earlier run {stale.id} of {label}")
        workflow_id = await host.start_workflow(
            definition.id, data, version=definition.version, reference=reference
        )
        view.echo(f"Running {label} (workflow {workflow_id}) in {store}")
    progress = Progress(host, workflow_id, tty=view.tty, color=view.color, err=view.err)
    final: WorkflowInstance | None = None
    timed_out = False
    with progress:
        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.follow, events)

            async def wait() -> None:
                nonlocal final, timed_out
                try:
                    final = await host.wait_for_workflow(workflow_id, timeout=timeout)
                except WorkflowTimeoutError:
                    timed_out = True
                else:
                    # Let the progress show the events still on their way (the last steps).
                    with anyio.move_on_after(2):
                        await progress.finished.wait()
                tg.cancel_scope.cancel()

            async def suspended() -> None:
                await progress.suspended.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(wait)
            tg.start_soon(suspended)
    elapsed = time.monotonic() - started
    took = format_seconds(elapsed)
    instance = final if final is not None else await host.get_workflow(workflow_id)
    if timed_out:
        code = EXIT_TIMEOUT
        outcome = "timeout"
        view.echo(
            f"⏱ {label} still {instance.status} after --timeout {format_seconds(timeout or 0)} "
            f"(workflow {workflow_id}); the run stays stored, run the same command again "
            "to resume it",
            fg="yellow",
        )
    elif final is None:
        code = EXIT_SUSPENDED if instance.status == WorkflowStatus.SUSPENDED else EXIT_FAILED
        outcome = str(instance.status)
        view.echo(
            f"⏸ {label} suspended after {took} (workflow {workflow_id}); "
            "resume it with `wfe workflows resume`",
            fg="yellow",
        )
    elif final.status == WorkflowStatus.COMPLETE:
        code = 0
        outcome = str(final.status)
        view.echo(f"✓ {label} complete in {took}", fg="green")
        _echo_outputs(view, declared_outputs(definition, final))
    else:
        code = EXIT_FAILED
        outcome = str(final.status)
        message = printable(await _failure(host, workflow_id))
        line = f"✗ {label} {final.status} after {took}" + (f": {message}" if message else "")
        view.echo(line, fg="red")
    if view.as_json:
        errors = await _errors(host, workflow_id)
        summary = run_summary(definition, instance, errors, status=outcome, seconds=elapsed)
        click.echo(json.dumps(summary, indent=2, default=str, ensure_ascii=False))
    return code


def _echo_outputs(view: View, outputs: Mapping[str, Any]) -> None:
    if not outputs:
        return
    width = max(len(name) for name in outputs)
    view.echo("Outputs:")
    for name, value in outputs.items():
        view.echo(f"  {printable(name).ljust(width)}  {printable(format_value(value))}")


async def _errors(host: WorkflowHost, workflow_id: str) -> list[ExecutionError]:
    try:
        return list(await host.persistence.get_errors(workflow_id))
    except WfeError:
        return []


async def _failure(host: WorkflowHost, workflow_id: str) -> str:
    errors = await _errors(host, workflow_id)
    return errors[-1].message if errors else ""
