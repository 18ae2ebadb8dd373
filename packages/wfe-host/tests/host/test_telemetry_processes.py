"""One trace across processes: a workflow whose passes ran in two processes sharing a SQLite
file, and the delivery of an event published by a third party, all in the trace the workflow
was started in (the trace context is stored with the instance and the event)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wfe_host_tests_polling import until_waiting_for_event

from wfe_core.errors import ProviderNotFoundError
from wfe_core.models import WorkflowStatus
from wfe_host import WorkflowClient
from wfe_host.telemetry import Telemetry

if TYPE_CHECKING:
    from types import ModuleType

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("_otel_worker.py")
#: Seconds the second process may take (it gives up on its own after 30).
WORKER_TIMEOUT = 60.0


def _worker_module() -> ModuleType:
    name = "wfe_host_tests_otel_worker"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, WORKER)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _run_worker(db: Path, spans: Path, workflow_id: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(db), str(spans), workflow_id],
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in spans.read_text().splitlines()]


async def test_passes_in_two_processes_and_an_event_delivery_are_one_trace(
    tmp_path: Path,
) -> None:
    worker = _worker_module()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=provider)
    tracer = telemetry.tracer
    db = tmp_path / "wfe.db"

    # This process: start the workflow inside a request's span and run its first pass.
    try:
        host = worker.on_file(str(db), telemetry)
    except ProviderNotFoundError:
        pytest.skip("wfe-sqlite is not installed")
    async with host:
        with tracer.start_as_current_span("POST /relay") as request:
            workflow_id = await host.start_workflow("relay")
        await until_waiting_for_event(host, workflow_id)
    # Someone else approves it later (a client runs no pass), in a span of their own.
    async with worker.on_file(str(db), telemetry, WorkflowClient) as client:
        with tracer.start_as_current_span("POST /relay/go") as approval:
            await client.publish_event("go", "relay")

    # Another process delivers the event and runs the rest, exporting its spans to a file.
    theirs = await anyio.to_thread.run_sync(_run_worker, db, tmp_path / "spans.jsonl", workflow_id)

    async with worker.on_file(str(db), telemetry, WorkflowClient) as client:
        done = await client.get_workflow(workflow_id)
    assert done.status == WorkflowStatus.COMPLETE
    here, there = done.data.pids
    assert here == os.getpid()
    assert there != here  # the passes did run in two processes

    root = request.get_span_context()
    trace_id = f"{root.trace_id:032x}"
    ours = exporter.get_finished_spans()
    (first_pass,) = [s for s in ours if s.name == "RunWorkflow:relay"]
    assert first_pass.parent is not None
    assert first_pass.parent.span_id == root.span_id
    first_id = first_pass.context.span_id
    children = [s.name for s in ours if s.parent and s.parent.span_id == first_id]
    assert children == ["RunStep:first", "RunStep:wait"]

    names = sorted(s["name"] for s in theirs if s["name"] != "RunWorkflow:relay")
    assert names == ["DeliverEvent:go", "RunStep:second", "RunStep:wait"]
    by_name = {s["name"]: s for s in theirs}
    # Every span of the other process is in the request's trace ...
    assert {s["trace_id"] for s in theirs} == {trace_id}
    # ... its passes children of the request's span, as the instance stored it (a pass that
    # found nothing to do yet, queued before the event was delivered, may come first) ...
    passes = [s for s in theirs if s["name"] == "RunWorkflow:relay"]
    assert all(p["parent_id"] == f"{root.span_id:016x}" for p in passes)
    (second_pass,) = [p for p in passes if p["attributes"]["wfe.pass.outcome"] == "complete"]
    assert second_pass["parent_id"] == f"{root.span_id:016x}"
    assert second_pass["attributes"]["wfe.workflow.id"] == workflow_id
    assert second_pass["attributes"]["wfe.pass.outcome"] == "complete"
    assert by_name["RunStep:second"]["parent_id"] == second_pass["span_id"]
    # ... and the delivery in it too, linked to the span that published the event.
    delivery = by_name["DeliverEvent:go"]
    assert delivery["parent_id"] == f"{root.span_id:016x}"
    assert delivery["links"] == [f"{approval.get_span_context().span_id:016x}"]
