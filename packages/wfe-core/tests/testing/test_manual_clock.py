"""ManualClock: the test kit's Clock that moves only when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from wfe_core.builder import WorkflowBuilder
from wfe_core.clock import Clock
from wfe_core.models import ErrorBehavior, WorkflowStatus
from wfe_core.testing import EngineHarness, ManualClock

if TYPE_CHECKING:
    from wfe_core import StepContext

START = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_is_a_clock_that_stands_still() -> None:
    clock = ManualClock(START)
    assert isinstance(clock, Clock)
    assert clock.now() == clock.now() == START
    assert clock.now().utcoffset() == timedelta(0)


def test_advance_moves_it_forward() -> None:
    clock = ManualClock(START)
    assert clock.advance(timedelta(hours=1, milliseconds=5)) == START + timedelta(
        hours=1, milliseconds=5
    )
    clock.advance(timedelta(0))
    assert clock.now() == START + timedelta(hours=1, milliseconds=5)


def test_set_moves_it_to_a_moment_in_utc() -> None:
    clock = ManualClock(START)
    plus_two = timezone(timedelta(hours=2))
    clock.set(datetime(2031, 5, 6, 12, tzinfo=plus_two))
    assert clock.now() == datetime(2031, 5, 6, 10, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_time_never_runs_backwards() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="must not be negative"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="is before the clock's time"):
        clock.set(START - timedelta(microseconds=1))
    assert clock.now() == START


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        ManualClock(datetime(2031, 1, 1))
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        ManualClock().set(datetime(2031, 1, 1))


def test_starts_at_a_fixed_time_by_default() -> None:
    assert ManualClock().now() == ManualClock().now()


@pytest.mark.anyio
async def test_the_harness_travels_in_time_on_a_manual_clock() -> None:
    """A workflow sleeping a day, then retrying a failing step an hour later, finishes
    without the test waiting, with every recorded time on the manual clock."""
    attempts: list[datetime] = []
    clock = ManualClock(START)

    def flaky(ctx: StepContext) -> None:
        attempts.append(clock.now())
        if len(attempts) == 1:
            raise RuntimeError("first try fails")

    definition = (
        WorkflowBuilder()
        .delay(timedelta(days=1))
        .then_fn(flaky)
        .on_error(ErrorBehavior.retry(interval=timedelta(hours=1)))
        .build("time-travel")
    )
    instance = await EngineHarness(clock=clock).run(definition)
    assert instance.status == WorkflowStatus.COMPLETE
    assert attempts == [START + timedelta(days=1), START + timedelta(days=1, hours=1)]
    assert instance.create_time == START
    assert instance.complete_time == START + timedelta(days=1, hours=1)
    assert clock.now() == START + timedelta(days=1, hours=1)
