"""Durations as written in YAML workflows: ``250ms``, ``5s``, ``1.5s``, ``2m``, ``1h``,
``1h30m``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

#: The longest duration a workflow may give (a timeout, a retry interval): 365 days.
MAX_DURATION = timedelta(days=365)

_NUMBER = r"(\d+(?:\.\d+)?)"
# Units in a fixed order, each at most once; ``m`` must not be the start of ``ms``.
_DURATION = re.compile(
    rf"^(?:{_NUMBER}h)?(?:{_NUMBER}m(?!s))?(?:{_NUMBER}s)?(?:{_NUMBER}ms)?$",
)


def parse_duration(text: object) -> timedelta:
    """The duration ``text`` names; ``ValueError`` explaining the format otherwise."""
    if isinstance(text, bool) or not isinstance(text, str):
        hint = f" (write {text}s for seconds)" if isinstance(text, int | float) else ""
        raise ValueError(f"bad duration {text!r}: expected e.g. 250ms, 5s, 1.5s, 2m, 1h30m{hint}")
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"bad duration {text!r}: expected e.g. 250ms, 5s, 1.5s, 2m, 1h30m")
    hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in match.groups())
    # Checked before building the timedelta: 99999999999h overflows it (OverflowError), and
    # anything near its limit overflows the deadlines computed from it later.
    total = hours * 3600 + minutes * 60 + seconds + millis / 1000
    if not math.isfinite(total) or total > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is too long: at most {format_duration(MAX_DURATION)}")
    return timedelta(hours=hours, minutes=minutes, seconds=seconds, milliseconds=millis)


def format_duration(delta: timedelta) -> str:
    """``delta`` in the same notation (``1h30m``, ``1.5s``, ``250ms``)."""
    total = delta.total_seconds()
    if total < 1 and total != 0:
        return f"{round(total * 1000)}ms"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)}h")
    if minutes:
        parts.append(f"{int(minutes)}m")
    if seconds or not parts:
        parts.append(f"{seconds:g}s")
    return "".join(parts)
