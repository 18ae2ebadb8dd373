"""Running a child process for a step: streaming its lines, a timeout that kills its whole
process group, and the tails of its output for the step's result."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from wfe_core.spi import processes

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import timedelta

    from anyio.abc import ByteReceiveStream, Process

    from wfe_core import StepContext

#: The logger step output lines go to, one record per line, at INFO. Records carry
#: ``workflow_id``, ``step_name``, ``pointer_id``, ``stream`` ("stdout"/"stderr") and ``line``;
#: ``wfe run`` shows them live.
OUTPUT_LOGGER = "wfe.output"
output_logger = logging.getLogger(OUTPUT_LOGGER)

#: Lines of each stream kept for the step's result.
TAIL_LINES = 40
#: Longest line shown (longer ones are cut in the tail and the log, never before parsing).
MAX_LINE = 4000
#: Longest line (in bytes) an executor's ``on_line`` gets whole; a longer one arrives cut to
#: this many bytes with ``cut=True`` (its rest is read and dropped, so memory stays bounded),
#: and an executor that parses it fails the step instead of losing what it carried.
MAX_PARSED_LINE = 4 * 1024 * 1024
#: How long the output pipes may stay open after the process exited and its group was killed.
_DRAIN_SECONDS = 5.0


@attrs.define
class ProcessResult:
    """How a step's process ended."""

    exit_code: int | None
    stdout_tail: list[str]
    stderr_tail: list[str]
    duration: float
    timed_out: bool = False

    def record(self) -> dict[str, Any]:
        """The step result recorded on its execution pointer."""
        return {
            "exit_code": self.exit_code,
            "stdout": "\n".join(self.stdout_tail),
            "stderr": "\n".join(self.stderr_tail),
            "duration_ms": round(self.duration * 1000),
            "timed_out": self.timed_out,
        }

    def last_error_line(self) -> str:
        """The last non-empty stderr line (else stdout line), for error messages."""
        for line in reversed(self.stderr_tail or self.stdout_tail):
            if line.strip():
                return line.strip()
        return ""


def kill_group(process: Process) -> None:
    """SIGKILL the process group the step's process leads (it and everything it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class LineEmitter:
    """Logs a step's output lines as they come, with the step's ids."""

    def __init__(self, ctx: StepContext, name: str) -> None:
        self.extra = {
            "workflow_id": ctx.workflow_id,
            "definition_id": ctx.definition.id,
            "step_name": name,
            "pointer_id": ctx.pointer.id,
        }

    def __call__(self, stream: str, line: str, cut: bool = False) -> None:
        line = shorten(line, cut)
        output_logger.info("%s", line, extra={**self.extra, "stream": stream, "line": line})


def shorten(line: str, cut: bool = False) -> str:
    """``line`` cut to :data:`MAX_LINE` characters for the log and the tail, saying how much
    was left out (the executor has already parsed the whole line). ``cut``: ``line`` is the
    start of a line over :data:`MAX_PARSED_LINE` bytes."""
    if cut:
        return line[:MAX_LINE] + f"… (a line over {MAX_PARSED_LINE // (1024 * 1024)} MiB)"
    if len(line) <= MAX_LINE:
        return line
    return line[:MAX_LINE] + f"… ({len(line) - MAX_LINE} more characters)"


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: timedelta | None,
    on_line: Callable[[str, str, bool], bool],
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run ``argv`` in a new session (its own process group) and wait for it.

    Every output line goes whole to ``on_line(stream, line, cut)`` (``cut``: it was longer
    than :data:`MAX_PARSED_LINE` bytes, this is its start); the line is kept (shortened) when
    that returns true. At ``timeout``, or when the step is cancelled, the whole process group
    is killed. When the process exits, what is left of its group is killed too, so a
    background child cannot keep the step (and its output pipes) alive; so is every process
    that carries the step's token (:mod:`wfe_core.spi.processes`), which finds the descendants
    that left the group (``setsid``, daemons).
    """
    started = time.monotonic()
    tails: dict[str, collections.deque[str]] = {
        "stdout": collections.deque(maxlen=TAIL_LINES),
        "stderr": collections.deque(maxlen=TAIL_LINES),
    }
    token = processes.new_token()
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=processes.environment_with_token(dict(env), token),
        start_new_session=True,
    )
    processes.step_started(process.pid, token)
    finished = False
    timed_out = False
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None
            assert process.stderr is not None
            tg.start_soon(_pump, process.stdout, "stdout", on_line, tails["stdout"])
            tg.start_soon(_pump, process.stderr, "stderr", on_line, tails["stderr"])
            if stdin is not None:
                tg.start_soon(_feed, process, stdin)
            with anyio.move_on_after(None if timeout is None else timeout.total_seconds()) as scope:
                await process.wait()
            if scope.cancelled_caught:
                timed_out = True
            kill_group(process)
            await process.wait()
            # Before draining: a leftover that kept the output pipes open would hold it up.
            finished = True
            await processes.step_finished(process.pid, token)
            tg.cancel_scope.deadline = anyio.current_time() + _DRAIN_SECONDS
    finally:
        if process.returncode is None:
            kill_group(process)
            with anyio.CancelScope(shield=True):
                await process.wait()
        with anyio.CancelScope(shield=True):
            if not finished:
                await processes.step_finished(process.pid, token)
            await process.aclose()
    return ProcessResult(
        exit_code=process.returncode,
        stdout_tail=list(tails["stdout"]),
        stderr_tail=list(tails["stderr"]),
        duration=time.monotonic() - started,
        timed_out=timed_out,
    )


async def _feed(process: Process, data: bytes) -> None:
    assert process.stdin is not None
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await process.stdin.send(data)
    with contextlib.suppress(OSError):
        await process.stdin.aclose()


async def _pump(
    stream: ByteReceiveStream,
    name: str,
    on_line: Callable[[str, str, bool], bool],
    tail: collections.deque[str],
) -> None:
    pending = bytearray()
    # Past MAX_PARSED_LINE bytes without a newline the line's start has been delivered (cut)
    # and the rest of it is dropped up to its newline.
    dropping = False

    def emit(raw: bytes, cut: bool) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if on_line(name, line, cut):
            tail.append(shorten(line, cut))

    try:
        async for chunk in stream:
            start = 0
            while True:
                newline = chunk.find(b"\n", start)
                piece = chunk[start:] if newline == -1 else chunk[start:newline]
                if not dropping:
                    pending += piece
                    if len(pending) > MAX_PARSED_LINE:
                        emit(bytes(pending[:MAX_PARSED_LINE]), True)
                        pending.clear()
                        dropping = True
                    elif newline != -1:
                        emit(bytes(pending), False)
                        pending.clear()
                if newline == -1:
                    break
                dropping = False
                start = newline + 1
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    if pending:
        emit(bytes(pending), False)
