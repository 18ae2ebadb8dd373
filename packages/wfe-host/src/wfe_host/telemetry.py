"""OpenTelemetry traces and metrics, through ``opentelemetry-api`` only.

Without the API installed (``pip install "wfe-host[otel]"``) nothing here runs. With the API
but no SDK configured, every span and instrument is a no-op; install and configure an SDK
(``opentelemetry-sdk`` plus an exporter, or ``opentelemetry-instrument``) to export them.

What is recorded (names and attributes are documented in docs/observability.md):

* a span ``RunWorkflow:<definition>`` per pass over an instance, with the workflow id,
  definition, version and the pass's outcome, errors recorded on it;
* a span ``RunStep:<step>`` around every step run (a child of its pass's span), with the
  workflow id, definition, version, step name and id, attempt and outcome as attributes, and
  the error recorded on it;
* a span ``DeliverEvent:<event>`` per delivery of an event to a waiting workflow, in the
  workflow's trace, linked to the span that published the event;
* the counters ``wfe.workflows.started``, ``wfe.workflows.completed``,
  ``wfe.workflows.failed`` and ``wfe.workflows.terminated``, the histogram
  ``wfe.step.duration`` (seconds, by definition, step and outcome), the counter
  ``wfe.lease.renewals`` (by outcome) and the gauge ``wfe.queue.depth`` (by queue).

The trace context (a :class:`~wfe_core.models.TraceContext`, written by the global text-map
propagator: W3C ``traceparent`` by default) is stored with an instance when it is started
and with an event when it is published, so every pass of a workflow, on whichever host, its
child workflows and the deliveries of its events are one trace.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

import anyio

from wfe_core import WorkflowMiddleware
from wfe_core.errors import ConcurrencyError, LockNotHeldError, StaleLeaseError
from wfe_core.models import TraceContext, WorkflowStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.propagators.textmap import TextMapPropagator

    from wfe_core import CallNext, ExecutionResult, StepContext
    from wfe_core.models import Event, WorkflowInstance
    from wfe_core.providers import QueueName, QueueProvider

__all__ = [
    "INSTRUMENTATION_NAME",
    "QUEUE_DEPTH_INTERVAL",
    "Telemetry",
    "available",
]

logger = logging.getLogger("wfe_host.telemetry")

#: The instrumentation scope of WFE's tracer and meter.
INSTRUMENTATION_NAME: Final = "wfe"

#: Seconds between two readings of the queues' depths (see :meth:`Telemetry.sample_queues`).
QUEUE_DEPTH_INTERVAL: Final = 5.0
#: Seconds between two looks at whether a global tracer provider was set (see
#: :meth:`Telemetry.tracing`).
TRACING_RECHECK: Final = 1.0

# Attribute names, in the style of OpenTelemetry's semantic conventions.
WORKFLOW_ID: Final = "wfe.workflow.id"
DEFINITION: Final = "wfe.workflow.definition"
VERSION: Final = "wfe.workflow.version"
PASS_OUTCOME: Final = "wfe.pass.outcome"
STEP_NAME: Final = "wfe.step.name"
STEP_ID: Final = "wfe.step.id"
ATTEMPT: Final = "wfe.step.attempt"
OUTCOME: Final = "wfe.step.outcome"
EVENT_NAME: Final = "wfe.event.name"
EVENT_KEY: Final = "wfe.event.key"
EVENT_ID: Final = "wfe.event.id"
QUEUE: Final = "wfe.queue.name"
LEASE_OUTCOME: Final = "wfe.lease.outcome"

_FINISHED: Final = {
    WorkflowStatus.COMPLETE: "completed",
    WorkflowStatus.FAILED: "failed",
    WorkflowStatus.TERMINATED: "terminated",
}


@functools.cache
def _global_textmap() -> Callable[[], TextMapPropagator]:
    """The API's reader of the global text-map propagator. Its module is imported on first
    use (importing it loads the propagators ``OTEL_PROPAGATORS`` names), once: a ``from``
    import of a package's submodule costs a start a few microseconds every time."""
    from opentelemetry import propagate

    return propagate.get_global_textmap


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


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _pass_failure(error: BaseException) -> str:
    """The outcome of a pass that raised ``error`` (an exception group: all its leaves)."""
    leaves = list(_leaves(error))
    if all(isinstance(e, (StaleLeaseError, LockNotHeldError)) for e in leaves):
        return "lease_lost"  # another worker holds the instance now: expected, not an error
    if all(isinstance(e, ConcurrencyError) for e in leaves):
        return "conflict"  # another writer got there first: the pass runs again
    if not any(isinstance(e, Exception) for e in leaves):
        return "cancelled"  # terminated, the lease lost, or the host stopping
    return "error"


class Telemetry(WorkflowMiddleware):
    """WFE's tracer, meter and instruments: a step middleware, a workflow middleware, and
    what the host's runtime calls around passes, event deliveries and lease renewals.

    The host makes one when ``opentelemetry-api`` is installed (``HostOptions.telemetry``),
    or takes the one given (``WorkflowHost(telemetry=Telemetry(...))``). Tracer and meter
    come from the global providers at construction unless given, so configure the SDK
    before creating the host. ``propagator`` writes and reads the stored trace contexts
    (default: the global text-map propagator at each use, W3C Trace Context and baggage
    unless ``OTEL_PROPAGATORS`` says otherwise).
    """

    #: It only records spans and metrics: the engine may run container steps inline through
    #: it, without storing their start (``wfe_core.engine.middleware.INLINE_SAFE``).
    inline_safe = True

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        propagator: TextMapPropagator | None = None,
        queue_depth_interval: float = QUEUE_DEPTH_INTERVAL,
    ) -> None:
        """``tracer_provider`` and ``meter_provider`` default to the global ones;
        ``queue_depth_interval`` is the seconds between readings of the queues' depths."""
        from opentelemetry import metrics, trace

        if not queue_depth_interval > 0:
            raise ValueError(
                f"Telemetry: queue_depth_interval must be > 0 seconds, got {queue_depth_interval!r}"
            )
        self.tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
        self._tracer_provider_given = tracer_provider is not None
        #: Whether the global tracer provider was set when last looked at, and until when
        #: (the monotonic clock) that look stands.
        self._tracing = False
        self._tracing_until = 0.0
        self._meter_provider_given = meter_provider is not None
        #: The same for the global meter provider (see ``metering``).
        self._metering = False
        self._metering_until = 0.0
        self._propagator = propagator
        self._queue_depth_interval = queue_depth_interval
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
        self._lease_renewals = meter.create_counter(
            "wfe.lease.renewals",
            unit="{renewal}",
            description="Renewals of the leases of running passes, by outcome",
        )
        #: The last depth read of each queue (replaced whole: the gauge's callback may run
        #: on a metric reader's thread).
        self._depths: dict[str, int] = {}
        #: Whether a metric reader ever collected the gauge (until then, no queue is read).
        self._observed = False
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        _share_depth_gauge(self, meter, provider)

    def tracing(self) -> bool:
        """Whether spans are recorded: a tracer provider was given, or the global one is
        set (an SDK configured, in code or by ``opentelemetry-instrument``). Until then
        every span would be the API's no-op, whose making costs a step more than the
        rest of the middleware, so none is made. An SDK set up after the host was made is
        seen within :data:`TRACING_RECHECK` seconds (asking the API costs a microsecond,
        too much to ask it on every step)."""
        if self._tracer_provider_given:
            return True
        now = time.monotonic()
        if now >= self._tracing_until:
            from opentelemetry import trace

            provider = trace.get_tracer_provider()
            self._tracing = not isinstance(provider, trace.ProxyTracerProvider)
            # Once set, the global provider cannot be replaced: no need to look again.
            self._tracing_until = float("inf") if self._tracing else now + TRACING_RECHECK
        return self._tracing

    def metering(self) -> bool:
        """Whether samples are recorded: a meter provider was given, or the global one is
        not the API's own (an SDK configured). Until then a step's duration sample would go
        to the API's no-op histogram, so none is made; an SDK set up later is seen within
        :data:`TRACING_RECHECK` seconds, as for :meth:`tracing`."""
        if self._meter_provider_given:
            return True
        now = time.monotonic()
        if now >= self._metering_until:
            from opentelemetry import metrics

            module = type(metrics.get_meter_provider()).__module__
            self._metering = not module.startswith("opentelemetry.metrics")
            self._metering_until = float("inf") if self._metering else now + TRACING_RECHECK
        return self._metering

    # -- trace context -------------------------------------------------------------------------
    def _textmap(self) -> TextMapPropagator:
        if self._propagator is not None:
            return self._propagator
        return _global_textmap()()

    def current_context(self) -> TraceContext | None:
        """The current span's context as the propagator writes it, to store with an instance
        or an event; ``None`` when there is none to join (no span, or no SDK)."""
        carrier: dict[str, str] = {}
        self._textmap().inject(carrier)
        return TraceContext.from_carrier(carrier)

    def _context_of(self, stored: TraceContext | None) -> Context | None:
        return None if stored is None else self._textmap().extract(stored.carrier())

    # -- passes --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def workflow_pass(self, instance: WorkflowInstance) -> Iterator[None]:
        """A ``RunWorkflow:<definition>`` span around one pass over ``instance``: a child of
        the instance's stored trace context, so every pass joins the trace it was started
        in, on whichever host it runs. An instance without one (started with no span
        current, or before telemetry was on) gets this pass's: the pass's first write
        stores it."""
        if not self.tracing():
            yield
            return
        from opentelemetry.trace import Status, StatusCode

        attributes: dict[str, Any] = {
            WORKFLOW_ID: instance.id,
            DEFINITION: instance.definition_id,
            VERSION: instance.version,
        }
        with self.tracer.start_as_current_span(
            f"RunWorkflow:{instance.definition_id}",
            context=self._context_of(instance.trace_context),
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if instance.trace_context is None:
                instance.trace_context = self.current_context()
            outcome = "error"
            try:
                yield
            except BaseException as exc:
                outcome = _pass_failure(exc)
                if outcome == "error":
                    for error in _leaves(exc):
                        if isinstance(error, Exception):
                            span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            else:
                outcome = str(instance.status)
                if instance.status == WorkflowStatus.FAILED:
                    span.set_status(Status(StatusCode.ERROR, "the workflow failed"))
            finally:
                span.set_attribute(PASS_OUTCOME, outcome)

    # -- event deliveries ----------------------------------------------------------------------
    @contextlib.contextmanager
    def event_delivery(self, event: Event, instance: WorkflowInstance) -> Iterator[None]:
        """A ``DeliverEvent:<event>`` span around delivering ``event`` to ``instance``: in
        the workflow's trace (the publisher's when the workflow has none), linked to the
        span that published the event."""
        if not self.tracing():
            yield
            return
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode, get_current_span

        published = self._context_of(event.trace_context)
        links = []
        if published is not None:
            span_context = get_current_span(published).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context))
        parent = self._context_of(instance.trace_context)
        attributes: dict[str, Any] = {
            EVENT_NAME: event.name,
            EVENT_KEY: event.key,
            EVENT_ID: event.id,
            WORKFLOW_ID: instance.id,
            DEFINITION: instance.definition_id,
            VERSION: instance.version,
        }
        with self.tracer.start_as_current_span(
            f"DeliverEvent:{event.name}",
            context=parent if parent is not None else published,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    # -- steps ---------------------------------------------------------------------------------
    async def __call__(self, ctx: StepContext, call_next: CallNext) -> ExecutionResult:
        """The step middleware: a ``RunStep:<step>`` span and a duration sample."""
        if not self.tracing():
            if not self.metering():
                return await call_next()  # nothing would be recorded
            # The duration sample only (inline, not another coroutine: one per step less
            # for the garbage collector).
            started = time.perf_counter()
            outcome = "failed"
            try:
                result = await call_next()
                outcome = _outcome(result)
                return result
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    outcome = "cancelled"
                raise
            finally:
                self._step_duration.record(
                    time.perf_counter() - started,
                    {
                        DEFINITION: ctx.workflow.definition_id,
                        STEP_NAME: ctx.step.display_name,
                        OUTCOME: outcome,
                    },
                )
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
        """Count the start, and store the current trace context with the new instance."""
        self._counters["started"].add(1, {DEFINITION: instance.definition_id})
        if instance.trace_context is None:
            instance.trace_context = self.current_context()

    async def after_workflow(self, instance: WorkflowInstance) -> None:
        name = _FINISHED.get(instance.status)
        if name is not None:
            self._counters[name].add(1, {DEFINITION: instance.definition_id})

    # -- leases --------------------------------------------------------------------------------
    def lease_renewal(self, outcome: str) -> None:
        """Count one renewal of a running pass's lease: ``renewed``, ``reacquired`` (it had
        lapsed and nobody took it), ``lost`` (another worker holds it) or ``failed`` (the
        lock raised)."""
        self._lease_renewals.add(1, {LEASE_OUTCOME: outcome})

    # -- queue depth ---------------------------------------------------------------------------
    async def sample_queues(self, queue: QueueProvider, names: Sequence[QueueName]) -> None:
        """Run while the workers do: read the depth of each of the queues ``names``
        (:meth:`QueueProvider.size <wfe_core.providers.QueueProvider.size>`) for the
        ``wfe.queue.depth`` gauge, once at the start and then every interval while a metric
        reader collects the gauge (never, without an SDK: the queues are then read once).
        A queue that cannot tell (``size`` raises ``NotImplementedError``) is left out."""
        wanted = list(names)
        failing: set[str] = set()
        first = True
        try:
            while wanted:
                # A timer, not an event: the gauge is read on a metric reader's thread.
                if first or self._observed:
                    self._depths = await self._read_depths(queue, wanted, failing)
                first = False
                await anyio.sleep(self._queue_depth_interval)
        finally:
            self._depths = {}  # stopped: nothing current to report

    @staticmethod
    async def _read_depths(
        queue: QueueProvider, wanted: list[QueueName], failing: set[str]
    ) -> dict[str, int]:
        """The depth of each queue in ``wanted``; one that cannot tell is dropped from it."""
        depths: dict[str, int] = {}
        for name in list(wanted):
            try:
                depths[name.value] = await queue.size(name)
            except NotImplementedError:
                logger.debug("queue %s cannot tell its depth: not sampled", name.value)
                wanted.remove(name)
            except Exception:
                # Once per spell of failures: the provider logs its own errors.
                if name.value not in failing:
                    failing.add(name.value)
                    logger.warning(
                        "could not read the depth of queue %s", name.value, exc_info=True
                    )
            else:
                failing.discard(name.value)
        return depths

    def observed_depths(self) -> dict[str, int]:
        """The queues' depths last read (the gauge was collected: read them from now on)."""
        self._observed = True
        return self._depths


#: The instruments whose queue depths one meter provider's ``wfe.queue.depth`` gauge
#: reports, by the provider's id. The SDK keeps the callbacks of the first gauge made under a
#: name and drops a later one's, so each provider gets one gauge, reading every host of the
#: process that records on it (a client made before a host would otherwise hide the host's).
_DEPTH_SOURCES: dict[int, weakref.WeakSet[Telemetry]] = {}
#: Held while the sources change or are read (the gauge is read on a metric reader's thread).
_DEPTH_LOCK = threading.Lock()


def _share_depth_gauge(telemetry: Telemetry, meter: Any, provider: Any) -> None:
    with _DEPTH_LOCK:
        sources = _DEPTH_SOURCES.get(id(provider))
        if sources is None:
            sources = _DEPTH_SOURCES[id(provider)] = weakref.WeakSet()
            meter.create_observable_gauge(
                "wfe.queue.depth",
                callbacks=[functools.partial(_observe_depths, sources)],
                unit="{item}",
                description="Items waiting in a work queue, as last read",
            )
        sources.add(telemetry)


def _observe_depths(
    sources: weakref.WeakSet[Telemetry], options: CallbackOptions
) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    with _DEPTH_LOCK:
        live = list(sources)
    # Hosts of one process on one shared queue read the same depth: one value per queue.
    depths: dict[str, int] = {}
    for telemetry in live:
        for name, depth in telemetry.observed_depths().items():
            depths[name] = max(depth, depths.get(name, 0))
    return [Observation(depth, {QUEUE: name}) for name, depth in depths.items()]
