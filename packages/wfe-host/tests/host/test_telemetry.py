"""OpenTelemetry: a span per pass and per step run with the workflow's attributes, errors on
the spans, the trace context joining passes, child workflows and event deliveries into one
trace, and workflow counters, step durations, lease renewals and queue depths as metrics
(the SDK's in-memory exporters)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from wfe_host_tests_polling import until, until_waiting_for_event

from wfe_core import ErrorBehavior, WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence, MemoryQueue
from wfe_core.providers import QueueName
from wfe_host import HostOptions, WorkflowHost
from wfe_host.telemetry import Telemetry

pytestmark = pytest.mark.anyio


@attrs.define
class Order:
    amount: int = 0
    tries: int = 0


def charge(ctx: Any) -> None:
    ctx.data.amount += 10


def flaky(ctx: Any) -> None:
    ctx.data.tries += 1
    if ctx.data.tries < 2:
        raise RuntimeError("card declined")


@attrs.define
class Instruments:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    telemetry: Telemetry
    telemetry_meter_provider: MeterProvider

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def instruments() -> Instruments:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, queue_depth_interval=0.05
    )
    return Instruments(spans, reader, telemetry, meter_provider)


def _host(instruments: Instruments, **options: Any) -> WorkflowHost:
    return WorkflowHost(options=HostOptions(**options), telemetry=instruments.telemetry)


async def test_each_step_run_is_a_span_with_the_workflows_attributes(instruments) -> None:
    definition = (
        WorkflowBuilder(Order)
        .start_with(charge)
        .name("charge")
        .then(flaky)
        .name("flaky")
        .on_error(ErrorBehavior.retry(0.01, max_retries=3))
        .build("order", 3)
    )
    async with _host(instruments) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("order", Order())
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE

    spans = [s for s in instruments.spans.get_finished_spans() if s.name.startswith("RunStep")]
    assert [s.name for s in spans] == ["RunStep:charge", "RunStep:flaky", "RunStep:flaky"]
    first = spans[0].attributes or {}
    assert first["wfe.workflow.id"] == workflow_id
    assert first["wfe.workflow.definition"] == "order"
    assert first["wfe.workflow.version"] == 3
    assert first["wfe.step.name"] == "charge"
    assert first["wfe.step.outcome"] == "done"
    failed, retried = spans[1], spans[2]
    assert failed.status.status_code == StatusCode.ERROR
    assert "card declined" in (failed.status.description or "")
    assert [e.name for e in failed.events] == ["exception"]
    assert (failed.attributes or {})["wfe.step.outcome"] == "failed"
    assert [(s.attributes or {})["wfe.step.attempt"] for s in (failed, retried)] == [1, 2]
    assert retried.status.status_code == StatusCode.UNSET


async def test_workflow_counters_and_step_durations(instruments) -> None:
    ok = WorkflowBuilder(Order).start_with(charge).name("charge").build("ok", 1)
    bad = (
        WorkflowBuilder(Order)
        .start_with(flaky)
        .name("flaky")
        .on_error(ErrorBehavior.terminate())
        .build("bad", 1)
    )
    async with _host(instruments) as host:
        host.register(ok)
        host.register(bad)
        for definition in ("ok", "ok", "bad"):
            workflow_id = await host.start_workflow(definition, Order())
            await host.wait_for_workflow(workflow_id, timeout=10)

    points = instruments.metric_points()

    def total(name: str, definition: str) -> int:
        return sum(
            p.value
            for p in points.get(name, [])
            if p.attributes.get("wfe.workflow.definition") == definition
        )

    assert total("wfe.workflows.started", "ok") == 2
    assert total("wfe.workflows.completed", "ok") == 2
    assert total("wfe.workflows.started", "bad") == 1
    assert total("wfe.workflows.terminated", "bad") == 1
    durations = {
        (p.attributes["wfe.step.name"], p.attributes["wfe.step.outcome"]): p.count
        for p in points["wfe.step.duration"]
    }
    assert durations == {("charge", "done"): 2, ("flaky", "failed"): 1}


def test_the_host_instruments_itself_when_the_api_is_installed() -> None:
    assert any(isinstance(m, Telemetry) for m in WorkflowHost().step_middleware)
    off = WorkflowHost(options=HostOptions(telemetry=False))
    assert not any(isinstance(m, Telemetry) for m in off.step_middleware)
    given = Telemetry()
    chosen = WorkflowHost(options=HostOptions(telemetry=False), telemetry=given)
    assert chosen.step_middleware[0] is given
    assert chosen.workflow_middleware[0] is given


def test_a_queue_depth_interval_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="queue_depth_interval must be > 0"):
        Telemetry(queue_depth_interval=0)


# -- passes, and one trace across them --------------------------------------------------------
def approval_flow() -> Any:
    return (
        WorkflowBuilder(Order)
        .start_with(charge)
        .name("charge")
        .wait_for("approved", key="42")
        .name("wait")
        .then(charge)
        .name("ship")
        .build("approval", 2)
    )


def by_name(instruments: Instruments) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in instruments.spans.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


async def test_each_pass_is_a_span_holding_its_steps_and_the_passes_are_one_trace(
    instruments,
) -> None:
    async with _host(instruments) as host:
        host.register(approval_flow())
        workflow_id = await host.start_workflow("approval", Order())
        await until_waiting_for_event(host, workflow_id)
        stored = await host.get_workflow(workflow_id)
        await host.publish_event("approved", "42")
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE

    spans = by_name(instruments)
    passes = spans["RunWorkflow:approval"]
    assert len(passes) == 2
    first, second = sorted(passes, key=lambda s: s.start_time)
    for span in passes:
        attributes = span.attributes or {}
        assert attributes["wfe.workflow.id"] == workflow_id
        assert attributes["wfe.workflow.definition"] == "approval"
        assert attributes["wfe.workflow.version"] == 2
    assert (first.attributes or {})["wfe.pass.outcome"] == "runnable"
    assert (second.attributes or {})["wfe.pass.outcome"] == "complete"
    # Started with no span current: the first pass is the trace's root, and its context is
    # what the instance stored, so the later pass is its child (the same trace).
    assert first.parent is None
    assert stored.trace_context is not None
    assert (stored.trace_context.traceparent or "").startswith(
        f"00-{first.context.trace_id:032x}-{first.context.span_id:016x}-"
    )
    assert second.parent is not None
    assert second.parent.span_id == first.context.span_id
    steps = {s.name: s for s in instruments.spans.get_finished_spans() if "Step" in s.name}
    assert steps["RunStep:charge"].parent.span_id == first.context.span_id
    assert steps["RunStep:ship"].parent.span_id == second.context.span_id
    trace_ids = {s.context.trace_id for s in instruments.spans.get_finished_spans()}
    assert trace_ids == {first.context.trace_id}
    (delivery,) = spans["DeliverEvent:approved"]
    assert delivery.kind == SpanKind.CONSUMER
    assert delivery.parent.span_id == first.context.span_id
    assert (delivery.attributes or {})["wfe.event.key"] == "42"
    assert (delivery.attributes or {})["wfe.workflow.id"] == workflow_id
    assert delivery.links == ()  # published with no span current: nothing to link to


async def test_a_workflow_started_in_a_span_and_an_event_published_in_another_join_it(
    instruments,
) -> None:
    tracer = instruments.telemetry.tracer
    async with _host(instruments) as host:
        host.register(approval_flow())
        with tracer.start_as_current_span("checkout") as checkout:
            workflow_id = await host.start_workflow("approval", Order())
        await until_waiting_for_event(host, workflow_id)
        with tracer.start_as_current_span("approve-request") as request:
            event_id = await host.publish_event("approved", "42")
        await host.wait_for_workflow(workflow_id, timeout=10)
        event = await host.persistence.get_event(event_id)

    spans = by_name(instruments)
    root = checkout.get_span_context()
    for span in spans["RunWorkflow:approval"]:
        assert span.context.trace_id == root.trace_id
        assert span.parent.span_id == root.span_id
    (delivery,) = spans["DeliverEvent:approved"]
    assert delivery.context.trace_id == root.trace_id
    published = request.get_span_context()
    assert event.trace_context is not None
    assert f"-{published.span_id:016x}-" in (event.trace_context.traceparent or "")
    assert [link.context.span_id for link in delivery.links] == [published.span_id]


async def test_a_child_workflow_is_in_its_parents_trace(instruments) -> None:
    child = WorkflowBuilder(Order).start_with(charge).name("child-step").build("child", 1)
    parent = (
        WorkflowBuilder(Order)
        .start_with(charge)
        .name("before")
        .sub_workflow("child", version=1)
        .name("call-child")
        .build("parent", 1)
    )
    async with _host(instruments) as host:
        host.register(child)
        host.register(parent)
        workflow_id = await host.start_workflow("parent", Order())
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE

    spans = by_name(instruments)
    parent_passes = spans["RunWorkflow:parent"]
    trace_id = parent_passes[0].context.trace_id
    assert {s.context.trace_id for s in instruments.spans.get_finished_spans()} == {trace_id}
    (child_pass,) = spans["RunWorkflow:child"]
    starting_step = next(
        s for s in spans["RunStep:call-child"] if s.context.span_id == child_pass.parent.span_id
    )
    assert starting_step.parent.span_id == parent_passes[0].context.span_id
    (finished,) = spans["DeliverEvent:wfe.workflow-finished"]
    # The child's finished notification links to the child's pass that stored it.
    assert [link.context.span_id for link in finished.links] == [child_pass.context.span_id]


async def test_a_failed_workflow_marks_its_pass_an_error(instruments) -> None:
    def boom(ctx: Any) -> None:
        raise RuntimeError("no stock")

    definition = WorkflowBuilder(Order).start_with(boom).name("boom").build("doomed", 1)
    async with _host(instruments) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("doomed", Order())
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.FAILED
    (span,) = by_name(instruments)["RunWorkflow:doomed"]
    assert (span.attributes or {})["wfe.pass.outcome"] == "failed"
    assert span.status.status_code == StatusCode.ERROR
    (step,) = by_name(instruments)["RunStep:boom"]
    assert "no stock" in (step.status.description or "")


async def test_telemetry_off_stores_no_trace_context(instruments) -> None:
    tracer = instruments.telemetry.tracer
    async with WorkflowHost(options=HostOptions(telemetry=False)) as host:
        host.register(approval_flow())
        with tracer.start_as_current_span("checkout"):
            workflow_id = await host.start_workflow("approval", Order())
            await until_waiting_for_event(host, workflow_id)
            event_id = await host.publish_event("approved", "42")
        done = await host.wait_for_workflow(workflow_id, timeout=10)
        event = await host.persistence.get_event(event_id)
    assert done.trace_context is None
    assert event.trace_context is None
    assert [s.name for s in instruments.spans.get_finished_spans()] == ["checkout"]


# -- lease renewals and queue depth -----------------------------------------------------------
def renewals(instruments: Instruments) -> dict[str, int]:
    return {
        p.attributes["wfe.lease.outcome"]: p.value
        for p in instruments.metric_points().get("wfe.lease.renewals", [])
    }


async def test_lease_renewals_are_counted_by_outcome(instruments) -> None:
    async def slow(ctx: Any) -> None:
        await anyio.sleep(0.35)  # the renewer renews the 0.2 s lease meanwhile

    def blocking(ctx: Any) -> None:
        # Blocks the event loop past the lease: the renewer starves, and the write after the
        # step takes the lapsed lease again.
        time.sleep(0.3)

    definition = (
        WorkflowBuilder(Order)
        .start_with(slow)
        .name("slow")
        .then(blocking)
        .name("blocking")
        .build("leased", 1)
    )
    async with _host(instruments, lease_seconds=0.2) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("leased", Order())
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE
    counted = renewals(instruments)
    assert counted.get("renewed", 0) >= 1
    assert counted.get("reacquired", 0) >= 1
    assert "lost" not in counted


def depths(instruments: Instruments) -> dict[str, int]:
    return {
        p.attributes["wfe.queue.name"]: p.value
        for p in instruments.metric_points().get("wfe.queue.depth", [])
    }


class QueueWithoutDepth(MemoryQueue):
    """A queue that cannot tell its depth (``size`` is optional in the contract)."""

    async def size(self, queue: QueueName) -> int:
        raise NotImplementedError


async def test_the_queue_depth_gauge_reads_the_queues_while_it_is_collected(
    instruments,
) -> None:
    telemetry = instruments.telemetry
    queue = MemoryQueue()
    async with queue, anyio.create_task_group() as tg:
        for item in ("a", "b", "c"):
            await queue.enqueue(QueueName.WORKFLOW, item)
        tg.start_soon(telemetry.sample_queues, queue, [QueueName.WORKFLOW, QueueName.EVENT])
        await until(lambda: depths(instruments) == {"workflow": 3, "event": 0})
        await queue.enqueue(QueueName.EVENT, "e")
        message = await queue.dequeue(QueueName.WORKFLOW)
        assert message is not None
        # Collected above, so read again every interval (0.05 s): in flight is not waiting.
        await until(lambda: depths(instruments) == {"workflow": 2, "event": 1})
        tg.cancel_scope.cancel()
    assert depths(instruments) == {}  # stopped: nothing to report

    async with QueueWithoutDepth() as blind, anyio.create_task_group() as tg:
        tg.start_soon(telemetry.sample_queues, blind, [QueueName.WORKFLOW])
        await anyio.sleep(0.15)
        assert depths(instruments) == {}
        tg.cancel_scope.cancel()


async def test_a_host_with_workers_reports_its_queues_depths(instruments) -> None:
    queue = MemoryQueue()
    host = WorkflowHost(queue=queue, telemetry=instruments.telemetry)
    async with host:
        # No search index: the index queue is not the host's to watch.
        await queue.enqueue(QueueName.INDEX, "x")
        await until(lambda: depths(instruments) == {"workflow": 0, "event": 0})


async def test_without_an_sdk_no_span_is_made_and_metrics_still_are(instruments) -> None:
    from opentelemetry import trace

    # No tracer provider given and none set globally: spans would be the API's no-ops.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    telemetry = Telemetry(meter_provider=instruments.telemetry_meter_provider)
    assert not telemetry.tracing()
    async with WorkflowHost(telemetry=telemetry) as host:
        host.register(approval_flow())
        workflow_id = await host.start_workflow("approval", Order())
        await until_waiting_for_event(host, workflow_id)
        await host.publish_event("approved", "42")
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.trace_context is None  # nothing to join
    durations = {
        (p.attributes["wfe.step.name"], p.attributes["wfe.step.outcome"]): p.count
        for p in instruments.metric_points()["wfe.step.duration"]
    }
    assert durations == {
        ("charge", "done"): 1,
        ("wait", "waiting_for_event"): 1,
        ("wait", "done"): 1,
        ("ship", "done"): 1,
    }
    assert instruments.spans.get_finished_spans() == ()


async def test_telemetry_leaves_a_loops_writes_as_they_are_without_it(instruments) -> None:
    def increment(ctx: Any) -> None:
        ctx.data.amount += 1

    definition = (
        WorkflowBuilder(Order)
        .while_do(lambda data: data.amount < 3, lambda b: b.start_with(increment).name("increment"))
        .build("loop", 1)
    )
    seen: list[str] = []

    async def watching(ctx: Any, call_next: Any) -> Any:
        seen.append(ctx.step.display_name)
        return await call_next()

    async def writes(host: WorkflowHost) -> int:
        async with host:
            host.register(definition)
            workflow_id = await host.start_workflow("loop", Order())
            done = await host.wait_for_workflow(workflow_id, timeout=10)
        assert done.status == WorkflowStatus.COMPLETE
        assert done.data.amount == 3
        return done.revision  # one per write

    plain = await writes(WorkflowHost(options=HostOptions(telemetry=False)))
    # Telemetry says it only observes (inline_safe = True), so the engine still runs the
    # container steps in place, through it: a round of the loop costs the same writes.
    assert await writes(WorkflowHost(telemetry=instruments.telemetry)) == plain
    spans = [s.name for s in instruments.spans.get_finished_spans()]
    assert spans.count("RunStep:increment") == 3
    # A middleware that does not say so sees every container step run as any other step,
    # each with a write of its own.
    host = WorkflowHost(options=HostOptions(telemetry=False), step_middleware=[watching])
    assert await writes(host) > plain
    assert seen.count("increment") == 3
    assert "While" in seen


async def test_the_depth_gauge_reads_every_host_recording_on_its_meter_provider(
    instruments,
) -> None:
    # The fixture's instruments registered the gauge first (a client, say); a host's made
    # later on the same meter provider still has its depths reported.
    later = Telemetry(
        meter_provider=instruments.telemetry_meter_provider, queue_depth_interval=0.05
    )
    async with MemoryQueue() as queue, anyio.create_task_group() as tg:
        for item in ("a", "b"):
            await queue.enqueue(QueueName.WORKFLOW, item)
        tg.start_soon(later.sample_queues, queue, [QueueName.WORKFLOW])
        await until(lambda: depths(instruments) == {"workflow": 2})
        tg.cancel_scope.cancel()


async def test_loop_rounds_stay_one_write_each_and_are_traced(instruments) -> None:
    """The telemetry middleware only observes: a ``while_do`` round stays one write with it
    (its container runs inline, without a write of its own), and both the container's runs
    and the body's are spans."""

    def bump(ctx: Any) -> None:
        ctx.data["i"] += 1

    definition = (
        WorkflowBuilder(dict)
        .while_do(lambda data: data["i"] < 10, lambda body: body.start_with(bump).name("bump"))
        .build("loop", 1)
    )
    persistence = MemoryPersistence()
    writes = 0
    create, persist = persistence.create_workflow, persistence.persist_workflow

    async def counted_create(*args: Any, **kwargs: Any) -> None:
        nonlocal writes
        writes += 1
        await create(*args, **kwargs)

    async def counted_persist(*args: Any, **kwargs: Any) -> None:
        nonlocal writes
        writes += 1
        await persist(*args, **kwargs)

    persistence.create_workflow = counted_create  # type: ignore[method-assign]
    persistence.persist_workflow = counted_persist  # type: ignore[method-assign]
    t = instruments.telemetry
    async with WorkflowHost(
        persistence=persistence,
        options=HostOptions(telemetry=False),
        step_middleware=[t],
        workflow_middleware=[t],
    ) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("loop", {"i": 0})
        done = await host.wait_for_workflow(workflow_id, timeout=10)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data["i"] == 10
    # One a round (the first creates the instance), the last with the loop's end.
    assert writes == 11
    names = [s.name for s in instruments.spans.get_finished_spans()]
    assert names.count("RunStep:bump") == 10
    steps = [name for name in names if name.startswith("RunStep:")]
    assert len(steps) == 21  # and 11 runs of the loop itself
