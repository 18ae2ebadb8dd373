"""Turning what users pass to ``start_with``/``then`` into a step body source."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from wfe_core._step import StepBody
from wfe_core.engine._data import positional_arity
from wfe_core.primitives._inline import InlineStepFactory

if TYPE_CHECKING:
    from wfe_core.models._definition import StepBodySource


def body_source(step: Any) -> StepBodySource | str:
    """The body source of ``step``, or a message saying why it is not one.

    A :class:`StepBody` subclass is used as it is; a callable taking no argument is a body
    factory; a callable taking the context is an inline step.
    """
    if inspect.isclass(step):
        if issubclass(step, StepBody):
            return step
        return f"{step.__name__} is a class but not a StepBody subclass"
    if isinstance(step, StepBody):
        return (
            f"{type(step).__name__} instance given; pass the class (or a factory) so every "
            "run gets a fresh body"
        )
    if callable(step):
        if positional_arity(step) == 0:
            return step  # type: ignore[no-any-return]
        return InlineStepFactory(step)
    return f"{step!r} is neither a StepBody subclass nor a callable"
