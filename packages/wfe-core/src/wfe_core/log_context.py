"""The workflow and step a log record belongs to, carried in context variables.

The runtime binds the workflow id around a pass and the step around a step body
(:func:`bound`); :class:`LogContextFilter` copies them onto every log record as
``workflow_id``, ``definition_id``, ``step_id`` (the step's id in its definition) and
``step_name`` (``None`` outside), so any
handler or formatter can show them — ``wfe --log-format json`` does. Context variables follow
anyio tasks, so records of concurrent passes never get each other's ids.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import contextlib
    from contextvars import Token

__all__ = ["FIELDS", "LogContextFilter", "StepBound", "bound", "current"]

#: The record attributes :class:`LogContextFilter` sets.
FIELDS = ("workflow_id", "definition_id", "step_id", "step_name")

_VARS: dict[str, ContextVar[str | int | None]] = {
    name: ContextVar(f"wfe_{name}", default=None) for name in FIELDS
}
_STEP_ID = _VARS["step_id"]
_STEP_NAME = _VARS["step_name"]


class _Bound:
    """The block of :func:`bound`: sets its variables on entry, resets them on exit. A class
    rather than a generator: the engine enters one around every step run."""

    __slots__ = ("tokens", "values")

    def __init__(self, values: dict[str, str | int | None]) -> None:
        self.values = values
        self.tokens: list[tuple[ContextVar[str | int | None], Token[str | int | None]]] = []

    def __enter__(self) -> None:
        self.tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in self.values.items()]

    def __exit__(self, *exc_info: object) -> None:
        for var, token in reversed(self.tokens):
            var.reset(token)


def bound(**values: str | int | None) -> contextlib.AbstractContextManager[None]:
    """Bind ``values`` (names from :data:`FIELDS`) for the code inside the block
    (``with bound(workflow_id=...):``)."""
    unknown = set(values) - set(_VARS)
    if unknown:
        raise TypeError(f"unknown log context fields: {', '.join(sorted(unknown))}")
    return _Bound(values)


class StepBound:
    """``bound(step_id=..., step_name=...)`` for the engine, which enters one around every
    step run: the two variables set and reset directly."""

    __slots__ = ("step_id", "step_name", "tokens")

    def __init__(self, step_id: int, step_name: str) -> None:
        self.step_id = step_id
        self.step_name = step_name

    def __enter__(self) -> None:
        self.tokens = (_STEP_ID.set(self.step_id), _STEP_NAME.set(self.step_name))

    def __exit__(self, *exc_info: object) -> None:
        step_id, step_name = self.tokens
        _STEP_NAME.reset(step_name)
        _STEP_ID.reset(step_id)


def current() -> dict[str, str | int | None]:
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
