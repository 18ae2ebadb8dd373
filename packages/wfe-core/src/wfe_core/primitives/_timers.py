"""Steps that wait: delay, schedule (a branch later, in the background), recur."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody

if TYPE_CHECKING:
    from wfe_core._step import StepContext


def _as_delta(value: timedelta | float | None) -> timedelta:
    if value is None:
        return timedelta(0)
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


class Delay(StepBody):
    """Waits ``period`` (a timedelta or seconds), then goes on."""

    period: timedelta | float = timedelta(0)

    async def run(self, ctx: StepContext) -> ExecutionResult:
        period = _as_delta(self.period)
        if ctx.persistence_data is None and period > timedelta(0):
            return ExecutionResult.sleep(period, {"slept": True})
        return ExecutionResult.next()


class Fork(StepBody):
    """Does nothing; the builder gives it two routes so a background branch (schedule,
    recur) starts beside the main flow."""

    refuses_error_behavior = "schedule or recur"

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.next()


class Schedule(StepBody):
    """Waits ``interval``, then runs its branch once."""

    refuses_error_behavior = "schedule"

    interval: timedelta | float = timedelta(0)

    async def run(self, ctx: StepContext) -> ExecutionResult:
        phase = (ctx.persistence_data or {}).get("phase")
        if phase is None:
            return ExecutionResult.sleep(_as_delta(self.interval), {"phase": "waiting"})
        if phase == "waiting":
            return ExecutionResult.branch([ctx.item], {"phase": "running"})
        return ExecutionResult.next()


class Recur(StepBody):
    """Every ``interval`` runs its branch, until ``stop`` is true (checked before each wait)."""

    refuses_error_behavior = "recur"

    interval: timedelta | float = timedelta(0)
    stop: bool = False

    async def run(self, ctx: StepContext) -> ExecutionResult:
        state = ctx.persistence_data or {}
        rounds = int(state.get("rounds", 0))
        if state.get("phase") == "waiting":
            return ExecutionResult.branch([ctx.item], {"phase": "ran", "rounds": rounds + 1})
        if self.stop:
            return ExecutionResult.next()
        return ExecutionResult.sleep(
            _as_delta(self.interval), {"phase": "waiting", "rounds": rounds}
        )
