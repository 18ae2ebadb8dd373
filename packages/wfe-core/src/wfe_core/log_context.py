"""The workflow and step a log record belongs to, carried in context variables.

The runtime binds the workflow id around a pass and the step around a step body
(:func:`bound`); :class:`LogContextFilter` copies them onto every log record as
``workflow_id``, ``definition_id``, ``step_id`` and ``step_name`` (``None`` outside), so any
handler or formatter can show them — ``wfe --log-format json`` does. Context variables follow
anyio tasks, so records of concurrent passes never get each other's ids.
"""

from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["FIELDS", "LogContextFilter", "bound", "current"]

#: The record attributes :class:`LogContextFilter` sets.
FIELDS = ("workflow_id", "definition_id", "step_id", "step_name")

_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"wfe_{name}", default=None) for name in FIELDS
}


@contextlib.contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Bind ``values`` (names from :data:`FIELDS`) for the code inside the block."""
    unknown = set(values) - set(_VARS)
    if unknown:
        raise TypeError(f"unknown log context fields: {', '.join(sorted(unknown))}")
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str | None]:
    """The bound values, by field name."""
    return {name: var.get() for name, var in _VARS.items()}


class LogContextFilter(logging.Filter):
    """Adds the bound workflow and step ids to every record it sees (never drops one).

    A value the record already carries (``extra={"workflow_id": ...}``) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True
