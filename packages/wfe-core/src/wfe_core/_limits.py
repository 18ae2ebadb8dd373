"""Bounds of duration-like settings, shared by the host and the providers.

A duration setting must be a finite number of seconds within a documented range: ``inf`` or
``1e12`` would otherwise be accepted and fail much later (an ``OverflowError`` adding it to a
``datetime``, a lease that never expires).

Internal: other distributions import these names from :mod:`wfe_core.spi`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import attrs

#: The longest duration a setting accepts (a lease, a busy timeout, a poll interval): 1 day.
MAX_SETTING_SECONDS = 86_400.0


def seconds_problem(
    value: Any, *, maximum: float = MAX_SETTING_SECONDS, allow_zero: bool = False
) -> str | None:
    """Why ``value`` is not a valid number of seconds (``must be ...``), ``None`` if it is."""
    low = ">= 0" if allow_zero else "> 0"
    most = f"{int(maximum)}" if float(maximum).is_integer() else f"{maximum:g}"
    wanted = f"must be a finite number of seconds {low} and at most {most}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{wanted}, got {value!r}"
    if not math.isfinite(value) or value > maximum or value < 0 or (value == 0 and not allow_zero):
        return f"{wanted}, got {value!r}"
    return None


def seconds_validator(*, maximum: float = MAX_SETTING_SECONDS, allow_zero: bool = False) -> Any:
    """An attrs validator of a duration field in seconds (see :func:`seconds_problem`); its
    ``ValueError`` reads ``'<field>' must be ...`` like attrs' own validators."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        problem = seconds_problem(value, maximum=maximum, allow_zero=allow_zero)
        if problem is not None:
            raise ValueError(f"'{attribute.name}' {problem}")

    return check
