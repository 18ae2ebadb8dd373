"""Waiting for an external event."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody

if TYPE_CHECKING:
    from wfe_core._step import StepContext

#: The outcome of a :class:`WaitFor` whose timeout expired before the event came.
TIMEOUT_OUTCOME = "timeout"


class WaitFor(StepBody):
    """Waits for the event ``event_name``/``event_key`` at or after ``effective_date``.

    After it, ``event_data`` holds the event's data (map it with
    ``.output(x=lambda step: step.event_data)``). With ``timeout``, the step goes on when it
    expires, with ``timed_out`` true and the outcome ``"timeout"``.
    """

    event_name: str = ""
    event_key: Any = None
    effective_date: datetime | None = None
    timeout: timedelta | float | None = None

    def __init__(self) -> None:
        self.event_data: Any = None
        self.timed_out = False

    async def run(self, ctx: StepContext) -> ExecutionResult:
        pointer = ctx.pointer
        if pointer.event_published:
            self.event_data = pointer.event_data
            return ExecutionResult.next()
        if pointer.event_name is not None:
            # Run again without the event: the timeout expired.
            self.timed_out = True
            return ExecutionResult.outcome(TIMEOUT_OUTCOME)
        timeout = self.timeout
        if timeout is not None and not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=timeout)
        return ExecutionResult.wait_for_event(
            self.event_name, str(self.event_key), self.effective_date, timeout=timeout
        )
