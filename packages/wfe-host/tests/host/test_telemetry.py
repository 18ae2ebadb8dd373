"""OpenTelemetry: a span per step run with the workflow's attributes, errors on the span,
and workflow counters and step durations as metrics (the SDK's in-memory exporters)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from wfe_core import ErrorBehavior, WorkflowBuilder, WorkflowStatus
from wfe_core.memory import MemoryPersistence
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
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return Instruments(spans, reader, telemetry)


def _host(instruments: Instruments) -> WorkflowHost:
    t = instruments.telemetry
    return WorkflowHost(
        options=HostOptions(telemetry=False), step_middleware=[t], workflow_middleware=[t]
    )


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

    spans = instruments.spans.get_finished_spans()
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
    assert len(names) == 21  # and 11 runs of the loop itself
