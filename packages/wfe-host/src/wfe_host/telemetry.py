"""OpenTelemetry traces and metrics, through ``opentelemetry-api`` only.

Without the API installed (``pip install "wfe-host[otel]"``) nothing here runs. With the API
but no SDK configured, every span and instrument is a no-op; install and configure an SDK
(``opentelemetry-sdk`` plus an exporter, or ``opentelemetry-instrument``) to export them.

What is recorded (names and attributes are documented in docs/observability.md):

* a span ``RunStep:<step>`` around every step run, with the workflow id, definition,
  version, step name and id, attempt and outcome as attributes, and the error recorded on it;
* the counters ``wfe.workflows.started``, ``wfe.workflows.completed``,
  ``wfe.workflows.failed`` and ``wfe.workflows.terminated``, and the histogram
  ``wfe.step.duration`` (seconds, by definition, step and outcome).
"""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING, Any, Final

from wfe_core import WorkflowMiddleware
from wfe_core.models import WorkflowStatus

if TYPE_CHECKING:
    from wfe_core import CallNext, ExecutionResult, StepContext
    from wfe_core.models import WorkflowInstance

__all__ = ["INSTRUMENTATION_NAME", "Telemetry", "available"]

#: The instrumentation scope of WFE's tracer and meter.
INSTRUMENTATION_NAME: Final = "wfe"

# Attribute names, in the style of OpenTelemetry's semantic conventions.
WORKFLOW_ID: Final = "wfe.workflow.id"
DEFINITION: Final = "wfe.workflow.definition"
VERSION: Final = "wfe.workflow.version"
STEP_NAME: Final = "wfe.step.name"
STEP_ID: Final = "wfe.step.id"
ATTEMPT: Final = "wfe.step.attempt"
OUTCOME: Final = "wfe.step.outcome"

_FINISHED: Final = {
    WorkflowStatus.COMPLETE: "completed",
    WorkflowStatus.FAILED: "failed",
    WorkflowStatus.TERMINATED: "terminated",
}


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed."""
    return importlib.util.find_spec("opentelemetry") is not None and (
        importlib.util.find_spec("opentelemetry.trace") is not None
    )


def _outcome(result: ExecutionResult) -> str:
    if result.proceed:
        return "done"
    if result.event_name is not None:
        return "waiting_for_event"
    if result.branch_values is not None:
        return "branching"
    return "sleeping"


class Telemetry(WorkflowMiddleware):
    """WFE's tracer, meter and instruments; a step middleware and a workflow middleware.

    The host adds one when ``opentelemetry-api`` is installed (``HostOptions.telemetry``).
    Tracer and meter come from the global providers at construction, so configure the SDK
    before creating the host.
    """

    #: It only records spans and metrics: the engine may run container steps inline through
    #: it, without storing their start (``wfe_core.engine.middleware.INLINE_SAFE``).
    inline_safe = True

    def __init__(self, *, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        """``tracer_provider`` and ``meter_provider`` default to the global ones."""
        from opentelemetry import metrics, trace

        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=meter_provider)
        self._counters = {
            name: meter.create_counter(
                f"wfe.workflows.{name}", unit="{workflow}", description=f"Workflows {name}"
            )
            for name in ("started", "completed", "failed", "terminated")
        }
        self._step_duration = meter.create_histogram(
            "wfe.step.duration", unit="s", description="Duration of step runs"
        )

    # -- steps ---------------------------------------------------------------------------------
    async def __call__(self, ctx: StepContext, call_next: CallNext) -> ExecutionResult:
        """The step middleware: a ``RunStep:<step>`` span and a duration sample."""
        from opentelemetry.trace import Status, StatusCode

        name = ctx.step.display_name
        attributes: dict[str, Any] = {
            WORKFLOW_ID: ctx.workflow.id,
            DEFINITION: ctx.workflow.definition_id,
            VERSION: ctx.workflow.version,
            STEP_NAME: name,
            STEP_ID: ctx.step.id,
            ATTEMPT: ctx.attempt,
        }
        started = time.perf_counter()
        outcome = "failed"
        with self.tracer.start_as_current_span(
            f"RunStep:{name}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                result = await call_next()
                outcome = _outcome(result)
                return result
            except BaseException as exc:
                if isinstance(exc, Exception):
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                else:  # cancelled (terminate, shutdown): not an error of the step
                    outcome = "cancelled"
                raise
            finally:
                span.set_attribute(OUTCOME, outcome)
                self._step_duration.record(
                    time.perf_counter() - started,
                    {DEFINITION: ctx.workflow.definition_id, STEP_NAME: name, OUTCOME: outcome},
                )

    # -- workflows -----------------------------------------------------------------------------
    async def before_workflow(self, instance: WorkflowInstance) -> None:
        self._counters["started"].add(1, {DEFINITION: instance.definition_id})

    async def after_workflow(self, instance: WorkflowInstance) -> None:
        name = _FINISHED.get(instance.status)
        if name is not None:
            self._counters[name].add(1, {DEFINITION: instance.definition_id})
