"""Middleware: code wrapped around every step run, and around every workflow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wfe_core.models.instance import WorkflowInstance
    from wfe_core.results import ExecutionResult
    from wfe_core.step import StepContext

#: Runs the rest of the chain (further middleware, then the step) and returns its result.
CallNext = Callable[[], Awaitable["ExecutionResult"]]

#: ``async def mw(ctx, call_next) -> ExecutionResult``: wraps every step run. It may act
#: before and after ``await call_next()``, replace the result, or raise.
StepMiddleware = Callable[["StepContext", CallNext], Awaitable["ExecutionResult"]]

#: The attribute a step middleware sets to ``True`` to say it only observes step runs: it
#: never waits for long, does no I/O whose repetition after a crash matters (a span, a metric,
#: a log line are fine), and does not need a step's start to be stored before it runs. The
#: engine then runs its container steps (``while_do``, ``for_each``, ``if_do``, ...) inline
#: through it without storing their start, so a loop's round costs one write instead of two.
#: Any other middleware (the default) sees container steps run as every other step.
INLINE_SAFE = "inline_safe"


def inline_safe(middleware: Sequence[StepMiddleware]) -> bool:
    """Whether every middleware of ``middleware`` is marked :data:`INLINE_SAFE` (true for
    none at all)."""
    return all(getattr(each, INLINE_SAFE, False) is True for each in middleware)


class WorkflowMiddleware:
    """Hooks around a whole workflow; override either method.

    :meth:`before_workflow` runs when a workflow is started, before it is stored (it may
    change ``instance.data`` or ``instance.reference``); :meth:`after_workflow` runs once the
    workflow has finished (complete, failed or terminated). An exception in ``before`` stops
    the start; one in ``after`` is logged.
    """

    async def before_workflow(self, instance: WorkflowInstance) -> None:
        """Called before ``instance`` is first stored."""

    async def after_workflow(self, instance: WorkflowInstance) -> None:
        """Called after ``instance`` finished."""


async def run_step_middleware(
    middleware: Sequence[StepMiddleware], ctx: StepContext, step: CallNext
) -> ExecutionResult:
    """Run ``step`` inside ``middleware`` (the first one outermost)."""
    if len(middleware) == 1:
        # The usual case (the host's telemetry alone), without the chain's closure and two
        # coroutines per step: the garbage collector runs less often.
        return await middleware[0](ctx, step)

    async def call(index: int) -> ExecutionResult:
        if index == len(middleware):
            return await step()
        return await middleware[index](ctx, lambda: call(index + 1))

    return await call(0)
