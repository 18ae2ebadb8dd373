"""The workflow and step a log record belongs to, carried in context variables.

The runtime binds the workflow id around a pass (:func:`bound`) and the step around a step
body (:data:`CURRENT_STEP`); :class:`LogContextFilter` copies them onto every log record as
``workflow_id``, ``definition_id``, ``step_id`` (the step's id in its definition) and
``step_name`` (``None`` outside), so any handler or formatter can show them — ``wfe
--log-format json`` does. Context variables follow anyio tasks, so records of concurrent
passes and of parallel branches never get each other's ids.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import contextlib
    from contextvars import Token

__all__ = ["CURRENT_STEP", "FIELDS", "LogContextFilter", "StepFields", "bound", "current"]

#: The record attributes :class:`LogContextFilter` sets.
FIELDS = ("workflow_id", "definition_id", "step_id", "step_name")

_WORKFLOW_ID: ContextVar[str | None] = ContextVar("wfe_workflow_id", default=None)
_DEFINITION_ID: ContextVar[str | None] = ContextVar("wfe_definition_id", default=None)


class StepFields(Protocol):
    """What the log context reads of the step it holds: a step definition
    (:class:`~wfe_core.models.StepDefinition`) has both."""

    @property
    def id(self) -> int | None: ...

    @property
    def display_name(self) -> str | None: ...


#: The step whose body runs in this context (``None`` outside one). The engine sets it to the
#: step's definition around every step run (``token = CURRENT_STEP.set(step)`` ...
#: ``CURRENT_STEP.reset(token)``): one variable set and reset per run, and the step's id and
#: name read only when a record is made. (Setting a context variable copies a small part of
#: the context; two variables, each bound by a context manager, cost a step run about four
#: times as much.)
CURRENT_STEP: ContextVar[StepFields | None] = ContextVar("wfe_step", default=None)


@attrs.frozen
class _Step:
    """The step fields given to :func:`bound` (``None`` where not given)."""

    id: int | None
    display_name: str | None


class _Bound:
    """The block of :func:`bound`: sets its variables on entry, resets them on exit."""

    __slots__ = ("step", "tokens", "workflow")

    def __init__(self, workflow: dict[str, str | None], step: _Step | None) -> None:
        self.workflow = workflow
        self.step = step
        self.tokens: list[tuple[ContextVar[Any], Token[Any]]] = []

    def __enter__(self) -> None:
        tokens = self.tokens = []
        if "workflow_id" in self.workflow:
            tokens.append((_WORKFLOW_ID, _WORKFLOW_ID.set(self.workflow["workflow_id"])))
        if "definition_id" in self.workflow:
            tokens.append((_DEFINITION_ID, _DEFINITION_ID.set(self.workflow["definition_id"])))
        if self.step is not None:
            tokens.append((CURRENT_STEP, CURRENT_STEP.set(self.step)))

    def __exit__(self, *exc_info: object) -> None:
        for var, token in reversed(self.tokens):
            var.reset(token)


def bound(**values: str | int | None) -> contextlib.AbstractContextManager[None]:
    """Bind ``values`` (names from :data:`FIELDS`) for the code inside the block
    (``with bound(workflow_id=...):``); a field not given keeps its value. Binding the
    workflow (``workflow_id``) also clears the step, unless ``step_id`` or ``step_name`` is
    given: a pass started from inside a step (a child workflow's) is not that step's."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields: {', '.join(sorted(unknown))}")
    step: _Step | None = None
    if "step_id" in values or "step_name" in values:
        outer = CURRENT_STEP.get()
        step_id = values["step_id"] if "step_id" in values else getattr(outer, "id", None)
        step_name = (
            values["step_name"] if "step_name" in values else getattr(outer, "display_name", None)
        )
        if step_id is not None and not isinstance(step_id, int):
            raise TypeError(f"step_id must be an int, not {type(step_id).__name__}")
        if step_name is not None and not isinstance(step_name, str):
            raise TypeError(f"step_name must be a str, not {type(step_name).__name__}")
        step = _Step(step_id, step_name)
    elif "workflow_id" in values:
        step = _NO_STEP
    workflow: dict[str, str | None] = {}
    for name in ("workflow_id", "definition_id"):
        if name in values:
            value = values[name]
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
            workflow[name] = value
    return _Bound(workflow, step)


_NO_STEP = _Step(None, None)


def current() -> dict[str, str | int | None]:
    """The bound values, by field name."""
    step = CURRENT_STEP.get()
    return {
        "workflow_id": _WORKFLOW_ID.get(),
        "definition_id": _DEFINITION_ID.get(),
        "step_id": None if step is None else step.id,
        "step_name": None if step is None else step.display_name,
    }


class LogContextFilter(logging.Filter):
    """Adds the bound workflow and step ids to every record it sees (never drops one).

    A value the record already carries (``extra={"workflow_id": ...}``) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True
