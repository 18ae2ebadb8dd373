"""A clock for tests that moves only when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["ManualClock"]

#: Where a :class:`ManualClock` starts unless given a time: fixed, so runs are repeatable.
DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class ManualClock:
    """A :class:`~wfe_core.clock.Clock` standing still until :meth:`advance` or :meth:`set`
    moves it: code reading it sees time pass without the test sleeping.

    ::

        clock = ManualClock()
        deadline = clock.now() + timedelta(hours=1)
        clock.advance(timedelta(hours=1))
        assert clock.now() == deadline
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _aware_utc(start, "start")

    def now(self) -> datetime:
        """The clock's current time (timezone-aware UTC)."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta`` and return the new time. Time never runs
        backwards: a negative ``delta`` raises :class:`ValueError`."""
        if delta < timedelta(0):
            raise ValueError(f"ManualClock.advance: delta must not be negative, got {delta}")
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        """Move the clock to ``moment`` (aware, not before the current time)."""
        moment = _aware_utc(moment, "moment")
        if moment < self._now:
            raise ValueError(
                f"ManualClock.set: {moment.isoformat()} is before the clock's time "
                f"{self._now.isoformat()}"
            )
        self._now = moment

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


def _aware_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"ManualClock: {what} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)
