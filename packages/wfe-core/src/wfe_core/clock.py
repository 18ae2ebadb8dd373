"""The clock the engine reads: one seam, so tests can move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Where the engine gets the current time (timezone-aware UTC)."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock (``datetime.now(UTC)``); what the engine uses unless given another."""

    def now(self) -> datetime:
        return datetime.now(UTC)


#: The clock used where none is given.
SYSTEM_CLOCK: Clock = SystemClock()
