"""A second process for the telemetry tests: a host on a SQLite file that runs one workflow to
its end, exporting its spans as JSON lines to a file.

``python _otel_worker.py DB SPANS WORKFLOW_ID``. The test process imports it too, for the
definition both processes run. Bounded: it gives up after 30 seconds.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import attrs

from wfe_core import WorkflowBuilder
from wfe_host import WorkflowClient, WorkflowHost
from wfe_host.bootstrap import resolve
from wfe_host.telemetry import Telemetry


@attrs.define
class Relay:
    #: The process id of each step's run.
    pids: list[int] = attrs.Factory(list)


def record_pid(ctx: Any) -> None:
    ctx.data.pids.append(os.getpid())


def relay_flow() -> Any:
    """A step, a wait for the event ``go``/``relay``, another step."""
    return (
        WorkflowBuilder(Relay)
        .start_with(record_pid)
        .name("first")
        .wait_for("go", key="relay")
        .name("wait")
        .then(record_pid)
        .name("second")
        .build("relay", 1)
    )


def on_file(
    path: str, telemetry: Telemetry, cls: type[WorkflowClient] = WorkflowHost
) -> WorkflowClient:
    """A host (or client) on the SQLite file ``path`` (persistence, lock and queue)."""
    settings = resolve({"persistence": f"sqlite:///{path}"})
    client = cls(
        persistence=settings.persistence,
        lock=settings.lock,
        queue=settings.queue,
        options=settings.options,
        telemetry=telemetry,
    )
    client.register(relay_flow())
    return client


def _span_line(span: Any) -> str:
    parent = span.parent
    return (
        json.dumps(
            {
                "name": span.name,
                "trace_id": f"{span.context.trace_id:032x}",
                "span_id": f"{span.context.span_id:016x}",
                "parent_id": None if parent is None else f"{parent.span_id:016x}",
                "links": [f"{link.context.span_id:016x}" for link in span.links],
                "attributes": dict(span.attributes or {}),
            }
        )
        + "\n"
    )


async def run(db: str, telemetry: Telemetry, workflow_id: str) -> None:
    async with on_file(db, telemetry) as host:
        await host.wait_for_workflow(workflow_id, timeout=30)


def main(db: str, spans: str, workflow_id: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    with open(spans, "w", encoding="utf-8") as out:
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_span_line))
        )
        anyio.run(run, db, Telemetry(tracer_provider=provider), workflow_id)
        provider.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
