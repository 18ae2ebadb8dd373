"""Internal to the engine: running one step body (inputs, step middleware, outputs,
cancellation), turning what it did into an outcome for the transitions."""

from __future__ import annotations

import contextlib
import logging
import traceback
from typing import TYPE_CHECKING, Any

from wfe_core import log_context
from wfe_core._results import ExecutionResult
from wfe_core._step import StepContext
from wfe_core.engine._data import call_flexible, merge_into, set_field
from wfe_core.engine._transitions import StepFailure
from wfe_core.engine.middleware import run_step_middleware

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anyio

    from wfe_core._step import StepBody
    from wfe_core.engine._executor import PassEnvironment
    from wfe_core.engine.middleware import StepMiddleware
    from wfe_core.models._definition import StepDefinition, WorkflowDefinition
    from wfe_core.models._instance import ExecutionPointer, WorkflowInstance

logger = logging.getLogger("wfe_core.engine")


async def run_step(
    environment: PassEnvironment,
    middleware: Sequence[StepMiddleware],
    instance: WorkflowInstance,
    definition: WorkflowDefinition,
    pointer: ExecutionPointer,
    step: StepDefinition,
    scope: anyio.CancelScope,
    log_extra: Mapping[str, Any],
    *,
    inline: bool = False,
) -> ExecutionResult | StepFailure | None:
    """Run ``step`` for ``pointer`` inside ``scope``: its result (with its outputs already in
    the workflow data), the error it raised, or ``None`` when it was cancelled (abandoned by
    the workflow).

    ``inline``: a container step run in place, under the pass's lock, through inline-safe
    middleware only (see ``_pass._run_primitives``): nothing can end its pointer while it
    runs, so ``scope`` (its ``ctx.cancellation``) is not entered (entering and leaving a
    scope cost more than running such a step's body)."""
    # Set directly, not through a context manager: this runs around every step run (see
    # ``CURRENT_STEP``).
    token = log_context.CURRENT_STEP.set(step)
    # The scope swallows its own cancellation (then the step was abandoned: ``None``).
    entered: contextlib.AbstractContextManager[object, bool] = _NOT_ENTERED if inline else scope
    try:
        with entered:
            try:
                body = environment.create_body(step)
                ctx = StepContext(
                    workflow=instance,
                    definition=definition,
                    step=step,
                    pointer=pointer,
                    host=environment.host_context,
                    cancellation=scope,
                    attempt=pointer.attempt,
                )
                for name, mapping in step.inputs.items():
                    setattr(body, name, call_flexible(mapping, instance.data, ctx))
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "running step %s", step.display_name, extra=_extra(log_extra, step, pointer)
                    )
                if len(middleware) == 1:
                    # The usual case (the host's telemetry alone): one coroutine less a step.
                    result = await middleware[0](ctx, lambda: body.run(ctx))
                elif middleware:
                    result = await run_step_middleware(middleware, ctx, lambda: body.run(ctx))
                else:
                    result = await body.run(ctx)
                if not isinstance(result, ExecutionResult):
                    raise TypeError(
                        f"step {step.display_name} returned {type(result).__name__}, "
                        "not an ExecutionResult"
                    )
                if result.proceed:
                    apply_outputs(instance, body, step, result)
                return result
            except Exception as exc:
                # Info, not warning: the step's error behaviour decides whether this matters
                # (the traceback is kept in the stored ExecutionError).
                logger.info(
                    "step %s failed: %r",
                    step.display_name,
                    exc,
                    extra=_extra(log_extra, step, pointer),
                )
                return StepFailure(exc, traceback.format_exc())
        return None
    finally:
        log_context.CURRENT_STEP.reset(token)


class _NotEntered(contextlib.AbstractContextManager[None, bool]):
    """Stands for a scope not entered: swallows nothing."""

    swallows = False

    def __exit__(self, *exc_info: object) -> bool:
        return self.swallows


_NOT_ENTERED = _NotEntered()


def apply_outputs(
    instance: WorkflowInstance, body: StepBody, step: StepDefinition, result: ExecutionResult
) -> None:
    """Copy a finished step's outputs (its output mappings, then ``result.output``) into the
    workflow data."""
    if instance.data is None and (step.outputs or result.output):
        instance.data = {}
    for name, mapping in step.outputs.items():
        set_field(instance.data, name, call_flexible(mapping, body, instance.data))
    if result.output:
        merge_into(instance.data, result.output)


def _extra(
    log_extra: Mapping[str, Any], step: StepDefinition, pointer: ExecutionPointer
) -> dict[str, Any]:
    return {**log_extra, "step_id": step.id, "pointer_id": pointer.id}
