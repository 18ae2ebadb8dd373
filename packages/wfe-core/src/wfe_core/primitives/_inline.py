"""Inline steps: a sync or async callable taking the step context."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wfe_core._results import ExecutionResult
from wfe_core._step import StepBody

if TYPE_CHECKING:
    from wfe_core._step import StepContext

#: ``fn(ctx)`` returning an ExecutionResult, ``None`` (go on) or an awaitable of either.
InlineFunction = Callable[["StepContext"], Any]


class InlineStep(StepBody):
    """Runs ``fn(ctx)``. A sync ``fn`` runs on the event loop, so it must not block; do
    blocking work in an async function with ``anyio.to_thread.run_sync``."""

    def __init__(self, fn: InlineFunction) -> None:
        self.fn = fn

    async def run(self, ctx: StepContext) -> ExecutionResult:
        result = self.fn(ctx)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return ExecutionResult.next()
        if not isinstance(result, ExecutionResult):
            raise TypeError(
                f"inline step {_name(self.fn)} returned {type(result).__name__}; "
                "return an ExecutionResult or None"
            )
        return result


class InlineStepFactory:
    """The zero-argument body factory of an inline step (named after the function)."""

    def __init__(self, fn: InlineFunction) -> None:
        self.fn = fn
        self.__name__ = _name(fn)

    def __call__(self) -> InlineStep:
        return InlineStep(self.fn)

    def __repr__(self) -> str:
        return f"InlineStepFactory({self.__name__})"


def _name(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "inline" if name == "<lambda>" else str(name)
