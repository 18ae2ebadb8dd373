"""Times as the SQLite tables store them: integer microseconds since the epoch, UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    """``value`` as integer microseconds since the epoch (naive datetimes are taken as UTC,
    as :mod:`wfe_core.serialization` does)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    """The aware UTC datetime of ``value`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=value)


def now_us() -> int:
    """The wall clock now, in microseconds since the epoch.

    Wall-clock time (not a monotonic clock) because leases and visibility deadlines are shared
    with other processes through the file; processes on one machine share the clock.
    """
    return time.time_ns() // 1000
