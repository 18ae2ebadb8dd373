"""Live progress of a workflow run for ``wfe run``: step status, durations and the steps'
output lines as they come.

On a terminal a status line at the bottom shows the running steps and their time so far;
when the output is not a terminal (CI logs, pipes) every change is one plain line.

Step output arrives through the ``wfe.output`` logger (one record per line, with
``workflow_id``, ``step_name``, ``pointer_id``, ``stream`` and ``line`` attributes), which any
step type can log to. A record comes the moment the step prints, possibly before the step's
STEP_STARTED lifecycle event (published after the pass stored the start), so the first
output line of a pointer shows its start line first, and the event then adds nothing.

Steps whose definition marks them ``metadata["hidden"]`` (the plumbing a format compiles to)
are not shown, except when they are skipped.

Everything shown that comes from the workflow (output lines, step and workflow names, error
messages) goes through :func:`~wfe_host.cli.terminal.printable` first, so a step cannot send
escape sequences to the terminal; the stored results keep the bytes as they were.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import TYPE_CHECKING, Any

import anyio
import click

from wfe_core.errors import WfeError
from wfe_core.models import LifecycleEventType, PointerStatus
from wfe_host.cli.terminal import printable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_core.models import LifecycleEvent, StepDefinition
    from wfe_host.host import WorkflowHost

#: The logger step output lines are logged to (see the module docstring).
OUTPUT_LOGGER = "wfe.output"

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_FINISHED = {
    LifecycleEventType.WORKFLOW_COMPLETED: "complete",
    LifecycleEventType.WORKFLOW_FAILED: "failed",
    LifecycleEventType.WORKFLOW_TERMINATED: "terminated",
    LifecycleEventType.WORKFLOW_SUSPENDED: "suspended",
}


def format_seconds(seconds: float) -> str:
    """``0.25s``, ``12.3s``, ``2m05s``."""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class _OutputHandler(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        workflow_id = getattr(record, "workflow_id", None)
        if workflow_id not in self.progress.workflows:
            return
        self.progress.output_line(
            workflow_id,
            str(getattr(record, "step_name", "") or ""),
            getattr(record, "pointer_id", None),
            str(getattr(record, "stream", "stdout")),
            str(getattr(record, "line", record.getMessage())),
        )


class Progress:
    """Prints the progress of workflow ``root_id`` (and of the child workflows it starts)."""

    def __init__(
        self, host: WorkflowHost, root_id: str, *, tty: bool, color: bool, err: bool = False
    ) -> None:
        self.host = host
        self.root_id = root_id
        #: A status line at the bottom (a terminal that is not --plain).
        self.tty = tty
        self.color = color
        #: Print to stderr (``wfe run --json`` keeps stdout for the summary).
        self.err = err
        #: Followed workflows → label prefix ("" for the root, "release > " for a child).
        self.workflows: dict[str, str] = {root_id: ""}
        self.running: dict[str, tuple[str, float]] = {}
        self.started: dict[str, float] = {}
        self.failed: set[str] = set()
        self.suspended = anyio.Event()
        #: Set once the root workflow's final event has been shown (so is everything before it).
        self.finished = anyio.Event()
        self._status_shown = False
        self._handler = _OutputHandler(self)
        self._logger = logging.getLogger(OUTPUT_LOGGER)
        self._old_level = self._logger.level

    # -- output ------------------------------------------------------------------------------
    def _style(self, text: str, **styles: Any) -> str:
        return click.style(text, **styles) if self.color else text

    def _clear_status(self) -> None:
        if self._status_shown:
            # color=True: the line must be erased even when colours are off (NO_COLOR).
            click.echo("\r\x1b[2K", nl=False, err=self.err, color=True)
            self._status_shown = False

    def echo(self, line: str) -> None:
        """Print ``line`` above the status line."""
        self._clear_status()
        click.echo(line, err=self.err, color=self.color)
        self._draw_status()

    def _draw_status(self) -> None:
        if not self.tty or not self.running:
            return
        now = time.monotonic()
        spinner = _SPINNER[int(now * 10) % len(_SPINNER)]
        parts = [f"{label} {format_seconds(now - since)}" for label, since in self.running.values()]
        text = f"{spinner} running: " + " · ".join(parts)
        width = max(shutil.get_terminal_size().columns - 1, 20)
        click.echo(self._style(text[:width], fg="cyan"), nl=False, err=self.err, color=True)
        self._status_shown = True

    def output_line(
        self, workflow_id: str, step: str, pointer_id: object, stream: str, line: str
    ) -> None:
        """One line a step printed: after the step's start line, shown first if its
        lifecycle event has not come yet (the executor publishes a pass's events after the
        step's output was logged)."""
        prefix = self.workflows.get(workflow_id, "")
        label = f"{prefix}{printable(step)}"
        if isinstance(pointer_id, str):
            self._show_start(pointer_id, label)
        bar = self._style("│", fg="bright_black")
        line = printable(line)
        text = self._style(line, fg="yellow") if stream == "stderr" else line
        self.echo(f"  {self._style(label, dim=True)} {bar} {text}")

    # -- lifetime ----------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        self._logger.addHandler(self._handler)
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        # The lines are shown here; the command's log handler must not print them again.
        self._old_propagate = self._logger.propagate
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old_level)
        self._logger.propagate = self._old_propagate
        self._clear_status()

    async def follow(self, events: AsyncIterator[LifecycleEvent]) -> None:
        """Print events until cancelled (redrawing the status line on a terminal)."""
        async with anyio.create_task_group() as tg:
            if self.tty:
                tg.start_soon(self._ticker)
            async for event in events:
                try:
                    await self.on_event(event)
                except WfeError:  # a workflow deleted meanwhile: nothing to show
                    continue

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(0.1)
            if self.running:
                self._clear_status()
                self._draw_status()

    # -- events ------------------------------------------------------------------------------
    def _step(self, event: LifecycleEvent) -> StepDefinition | None:
        definition = self.host.definitions.find(event.definition_id, event.version)
        if definition is None or event.step_id is None:
            return None
        if not 0 <= event.step_id < len(definition.steps):
            return None
        return definition.steps[event.step_id]

    async def on_event(self, event: LifecycleEvent) -> None:
        """Show one lifecycle event of a followed workflow."""
        if event.workflow_id not in self.workflows:
            if event.type != LifecycleEventType.WORKFLOW_STARTED:
                return
            child = await self.host.get_workflow(event.workflow_id)
            parent = child.parent_workflow_id
            if parent is None or parent not in self.workflows:
                return
            child_name = printable(child.definition_id)
            self.workflows[child.id] = f"{self.workflows[parent]}{child_name} > "
            self.echo(self._style(f"↳ started workflow {child_name} v{child.version}", fg="blue"))
            return
        prefix = self.workflows[event.workflow_id]
        kind = event.type
        if (
            kind
            in (
                LifecycleEventType.STEP_STARTED,
                LifecycleEventType.STEP_COMPLETED,
                LifecycleEventType.WORKFLOW_ERROR,
            )
            and event.pointer_id is not None
        ):
            await self._on_step(event, prefix)
        elif kind in _FINISHED:
            if event.workflow_id == self.root_id:
                if kind == LifecycleEventType.WORKFLOW_SUSPENDED:
                    self.suspended.set()
                else:
                    self.finished.set()
                return
            status = _FINISHED[kind]
            color = "green" if status == "complete" else "red"
            self.echo(self._style(f"↳ workflow {prefix.rstrip(' >')} {status}", fg=color))

    def _show_start(self, pointer_id: str, name: str) -> None:
        """The start line of a pointer, once per attempt (its first output line or its
        STEP_STARTED event, whichever comes first)."""
        again = pointer_id in self.started
        self.started.setdefault(pointer_id, time.monotonic())
        self.running[pointer_id] = (name, self.started[pointer_id])
        if again and pointer_id not in self.failed:
            return  # a container running again as its branches finish, or already shown
        self.failed.discard(pointer_id)
        self.echo(self._style(f"▶ {name}", fg="cyan"))

    async def _on_step(self, event: LifecycleEvent, prefix: str) -> None:
        step = self._step(event)
        hidden = step is not None and bool(step.metadata.get("hidden"))
        name = f"{prefix}{printable(event.step_name or (step.display_name if step else '?'))}"
        pointer_id = str(event.pointer_id)
        now = time.monotonic()
        if event.type == LifecycleEventType.STEP_STARTED:
            if not hidden:
                self._show_start(pointer_id, name)
            return
        instance = await self.host.get_workflow(event.workflow_id)
        try:
            pointer = instance.pointer(pointer_id)
        except KeyError:
            return
        if pointer.start_time is not None and pointer.end_time is not None:
            took = format_seconds((pointer.end_time - pointer.start_time).total_seconds())
        else:
            took = format_seconds(now - self.started.get(pointer_id, now))
        if event.type == LifecycleEventType.WORKFLOW_ERROR:
            self.running.pop(pointer_id, None)
            self.failed.add(pointer_id)
            if hidden:
                return
            retrying = pointer.active and pointer.status == PointerStatus.SLEEPING
            what = "failed, will retry" if retrying else "failed"
            message = printable(event.message or "")
            self.echo(self._style(f"✗ {name} {what} ({took}): {message}", fg="red"))
            return
        self.running.pop(pointer_id, None)
        skipped = isinstance(pointer.outcome, dict) and pointer.outcome.get("skipped") is True
        if skipped:
            self.echo(self._style(f"○ {name} skipped (condition false)", dim=True))
        elif not hidden:
            self.echo(self._style(f"✓ {name}", fg="green") + f" ({took})")
