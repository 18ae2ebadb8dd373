"""Bounded option types of the ``wfe`` commands: a number too large for the store or the
clock is a usage error naming the option, not an ``OverflowError`` later."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from wfe_core.spi import seconds_problem

if TYPE_CHECKING:
    from collections.abc import Callable

#: Most instances one ``wfe workflows list`` page shows.
MAX_TAKE = 10_000
#: Most instances ``wfe workflows list --skip`` skips (well inside a 64-bit store column).
MAX_SKIP = 1_000_000_000
#: The longest ``wfe run --timeout``: 365 days, in seconds.
MAX_RUN_TIMEOUT = 365 * 86_400.0


def seconds_callback(maximum: float) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback (for ``type=float``) that refuses anything but a finite number of
    seconds > 0 and at most ``maximum``: click's FloatRange lets ``nan`` through."""

    def check(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        problem = seconds_problem(value, maximum=maximum)
        if problem is not None:
            raise click.BadParameter(problem)
        return value

    return check
