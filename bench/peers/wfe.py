"""The WFE side of every scenario, run in a worker process (see :mod:`bench.worker`)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from bench.stats import percentile
from bench.usage import peak_rss_mb, written_bytes
from wfe_core import ExecutionResult, StepBody, StepContext, WorkflowBuilder
from wfe_host import HostOptions, WorkflowHost

if TYPE_CHECKING:
    from wfe_core import WorkflowDefinition

#: Seconds any single wait may take before a run is declared failed.
TIMEOUT = 120.0
#: The Valkey server of the ``sqlite+valkey`` backend (set by the worker from its spec).
VALKEY_URL: str | None = None


class Noop(StepBody):
    """A trivial step."""

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.next()


def chain(steps: int, definition_id: str) -> WorkflowDefinition:
    """A sequence of ``steps`` trivial steps."""
    builder = WorkflowBuilder(dict).start_with(Noop)
    for _ in range(steps - 1):
        builder = builder.then(Noop)
    return builder.build(definition_id, 1)


def remove_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def make_host(backend: str, target: str | None) -> WorkflowHost:
    """A host on ``backend``: ``memory``, ``sqlite`` (``target`` is the file) or
    ``postgres`` (``target`` is the URL), lock and queue following persistence; or
    ``sqlite+valkey``: the SQLite file with Valkey's lock, queue and lifecycle publisher."""
    if backend == "memory":
        return WorkflowHost()
    if backend == "sqlite":
        assert target is not None
        return WorkflowHost.from_settings({"persistence": f"sqlite:///{target}"})
    if backend == "postgres":
        assert target is not None
        return WorkflowHost.from_settings(_postgres_settings(target))
    if backend == "sqlite+valkey":
        # Instances in the SQLite file; lock, queue and lifecycle events in Valkey, under a
        # key prefix of this run's own.
        assert target is not None
        assert VALKEY_URL is not None, "the sqlite+valkey backend needs a Valkey server"
        valkey = {"url": VALKEY_URL, "options": {"key_prefix": f"bench-{os.getpid()}"}}
        return WorkflowHost.from_settings(
            {
                "persistence": f"sqlite:///{target}",
                "lock": valkey,
                "queue": valkey,
                "lifecycle": valkey,
            }
        )
    raise ValueError(f"unknown backend {backend!r}")


def _postgres_settings(url: str) -> dict[str, Any]:
    """PostgreSQL persistence, and its lock and queue where wfe-postgres has them (else the
    in-memory ones: the run measures the persistence then)."""
    from wfe_host.registry import default_registry

    registry = default_registry()
    settings: dict[str, Any] = {"persistence": {"provider": "postgres", "url": url}}
    for kind in ("lock", "queue"):
        has = registry.has_provider(kind, "postgres")
        settings[kind] = {"provider": "postgres", "url": url} if has else "memory"
    return settings


async def _start_and_wait(host: WorkflowHost, definition_id: str) -> None:
    workflow_id = await host.start_workflow(definition_id, {})
    instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    if str(instance.status) != "complete":
        raise RuntimeError(f"workflow {workflow_id} ended {instance.status}")


async def _burst(host: WorkflowHost, definition_id: str, count: int) -> tuple[float, float]:
    """Start ``count`` workflows at once and wait for all; the elapsed and CPU seconds
    (of every thread of this process)."""
    ids: list[str] = []
    started = time.perf_counter()
    cpu = time.process_time()

    async def start() -> None:
        ids.append(await host.start_workflow(definition_id, {}))

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(start)
    async with anyio.create_task_group() as tg:
        for workflow_id in ids:
            tg.start_soon(_wait_complete, host, workflow_id)
    return time.perf_counter() - started, time.process_time() - cpu


async def _wait_complete(host: WorkflowHost, workflow_id: str) -> None:
    instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    if str(instance.status) != "complete":
        raise RuntimeError(f"workflow {workflow_id} ended {instance.status}")


# -- scenarios ---------------------------------------------------------------------------------
async def sequential(backend: str, target: str | None, count: int, warmup: int) -> dict[str, Any]:
    """Scenario 1: 3-step workflows started and awaited one after the other."""
    if backend.startswith("sqlite") and target:
        remove_database(target)
    async with make_host(backend, target) as host:
        host.register(chain(3, "bench-3"))
        for _ in range(warmup):
            await _start_and_wait(host, "bench-3")
        latencies: list[float] = []
        started = time.perf_counter()
        cpu = time.process_time()
        for _ in range(count):
            t0 = time.perf_counter()
            await _start_and_wait(host, "bench-3")
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "workflows_per_s": count / elapsed,
        "cpu_ms_per_workflow": cpu * 1000 / count,
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
    }


async def burst(
    backend: str, target: str | None, count: int, warmup: int, *, fresh: bool = True
) -> dict[str, Any]:
    """Scenario 2 (and 6 on a seeded file): ``count`` 3-step workflows started at once."""
    if fresh and backend.startswith("sqlite") and target:
        remove_database(target)
    async with make_host(backend, target) as host:
        host.register(chain(3, "bench-3"))
        if warmup:
            await _burst(host, "bench-3", warmup)
        elapsed, cpu = await _burst(host, "bench-3", count)
    rate = count / elapsed
    return {
        "workflows_per_s": rate,
        "step_transitions_per_s": rate * 3,
        "cpu_ms_per_workflow": cpu * 1000 / count,
    }


def telemetry_note(host: WorkflowHost) -> str:
    """What the host's telemetry is: off, or on with which API and whether an SDK is set."""
    from wfe_host import telemetry

    if not any(isinstance(m, telemetry.Telemetry) for m in host.step_middleware):
        return "off" if telemetry.available() else "off (opentelemetry-api not installed)"
    from importlib.metadata import version

    from opentelemetry import trace

    # Without an SDK configured, the global provider is the API's proxy (every span a no-op).
    provider = trace.get_tracer_provider()
    proxy = isinstance(provider, trace.ProxyTracerProvider)
    sdk = "no SDK configured" if proxy else f"SDK {type(provider).__name__}"
    return f"on (opentelemetry-api {version('opentelemetry-api')}, {sdk})"


async def memory_steps(
    steps: int, workflows: int, warmup: int, fast: bool = True, telemetry: bool = True
) -> dict[str, Any]:
    """Scenario 3: in-memory engine, ``workflows`` runs of a ``steps``-step workflow
    (``fast=False``: the memory store without its shortcuts; ``telemetry=False``: the host
    without its OpenTelemetry middleware, which is on by default when the API is installed)."""
    from wfe_core.memory import MemoryPersistence

    options = HostOptions(telemetry=telemetry)
    async with WorkflowHost(persistence=MemoryPersistence(fast=fast), options=options) as host:
        host.register(chain(steps, "bench-long"))
        for _ in range(warmup):
            await _start_and_wait(host, "bench-long")
        started = time.perf_counter()
        cpu = time.process_time()
        for _ in range(workflows):
            await _start_and_wait(host, "bench-long")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {
        "steps_per_s": steps * workflows / elapsed,
        "cpu_us_per_step": cpu * 1e6 / (steps * workflows),
        "telemetry": telemetry_note(host),
    }


# -- scenario 7: one long workflow ---------------------------------------------------------
#: The shapes of scenario 7: each runs ``steps`` trivial steps in one workflow.
LONG_SHAPES = ("sequence", "while_do", "for_each", "for_each_parallel", "recur")
#: The interval of the ``recur`` shape: short, so the run takes little more than its work,
#: yet a real wait, so every round is a pass of its own (woken by the scheduler, the
#: instance loaded from the store), as a recur's rounds are.
RECUR_INTERVAL = timedelta(milliseconds=1)


def _count(ctx: StepContext) -> None:
    ctx.workflow.data["i"] += 1


def _noop(ctx: StepContext) -> None:
    return None


def long_definition(shape: str, steps: int) -> WorkflowDefinition:
    """One workflow of ``steps`` trivial steps shaped as ``shape`` (see ``LONG_SHAPES``): a
    sequence of ``then``, a ``while_do`` of one inline step, a sequential or a parallel
    ``for_each`` of one inline step, a ``recur`` of one inline step every
    ``RECUR_INTERVAL``."""
    definition_id = f"bench-{shape}-{steps}"
    if shape == "sequence":
        return chain(steps, definition_id)
    builder = WorkflowBuilder(dict)
    if shape == "while_do":
        flow = builder.while_do(
            lambda data: data["i"] < steps, lambda body: body.start_with(_count)
        )
    elif shape == "recur":
        flow = builder.recur(
            RECUR_INTERVAL,
            until=lambda data: data["i"] >= steps,
            body=lambda body: body.start_with(_count),
        )
    elif shape in ("for_each", "for_each_parallel"):
        flow = builder.for_each(
            lambda data: range(steps),
            lambda body: body.start_with(_noop),
            parallel=shape == "for_each_parallel",
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return flow.build(definition_id, 1)


async def long_workflow(
    shape: str, backend: str, target: str | None, steps: int, warmup: int
) -> dict[str, Any]:
    """Scenario 7: one workflow of ``steps`` steps, started and awaited alone (after
    ``warmup`` small ones of the same shape)."""
    if backend.startswith("sqlite") and target:
        remove_database(target)
    async with make_host(backend, target) as host:
        host.register(long_definition(shape, steps))
        host.register(long_definition(shape, 10))
        for _ in range(warmup):
            await _run_long(host, f"bench-{shape}-10")
        written = written_bytes()
        started = time.perf_counter()
        cpu = time.process_time()
        await _run_long(host, f"bench-{shape}-{steps}")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        written = written_bytes() - written
    return {
        "steps_per_s": steps / elapsed,
        "cpu_us_per_step": cpu * 1e6 / steps,
        "bytes_per_step": written / steps,
        "peak_rss_mb": peak_rss_mb(),
    }


async def _run_long(host: WorkflowHost, definition_id: str) -> None:
    workflow_id = await host.start_workflow(definition_id, {"i": 0})
    instance = await host.wait_for_workflow(workflow_id, timeout=RUN_LONG_TIMEOUT)
    if str(instance.status) != "complete":
        raise RuntimeError(f"workflow {workflow_id} ended {instance.status}")


#: Seconds one long workflow may take (10,000 steps at a slow 20 steps/s).
RUN_LONG_TIMEOUT = 600.0


_resumed: dict[str, float] = {}
_resumed_events: dict[str, anyio.Event] = {}


def _mark_resumed(ctx: StepContext) -> ExecutionResult:
    key = ctx.workflow.data["key"]
    _resumed[key] = time.perf_counter()
    event = _resumed_events.get(key)
    if event is not None:
        event.set()
    return ExecutionResult.next()


async def _until_waiting(host: WorkflowHost, workflow_id: str) -> None:
    with anyio.fail_after(TIMEOUT):
        while True:
            instance = await host.get_workflow(workflow_id)
            if any(str(p.status) == "waiting_for_event" for p in instance.pointers):
                return
            await anyio.sleep(0.001)


async def event_round_trip(
    backend: str, target: str | None, count: int, warmup: int
) -> dict[str, Any]:
    """Scenario 4: ``publish_event`` until the step after the waiting one runs."""
    if backend.startswith("sqlite") and target:
        remove_database(target)
    definition = (
        WorkflowBuilder(dict)
        .start_with(Noop)
        .wait_for("bench-go", key=lambda data: data["key"])
        .then_fn(_mark_resumed)
        .build("bench-event", 1)
    )
    latencies: list[float] = []
    async with make_host(backend, target) as host:
        host.register(definition)
        # Keys of this run's own: a run on a database an earlier run used must not find
        # that run's events (a wait matches every stored event of its key).
        run = uuid.uuid4().hex[:8]
        for i in range(warmup + count):
            key = f"{run}-k{i}"
            _resumed_events[key] = resumed = anyio.Event()
            workflow_id = await host.start_workflow("bench-event", {"key": key})
            await _until_waiting(host, workflow_id)
            published = time.perf_counter()
            await host.publish_event("bench-go", key, {"n": i})
            with anyio.fail_after(TIMEOUT):
                await resumed.wait()
            if i >= warmup:
                latencies.append(_resumed[key] - published)
            await _wait_complete(host, workflow_id)
    return {
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
    }


# -- scenario 5: shell and Deno steps ----------------------------------------------------------
SHELL_COMMAND = "echo hello"
DENO_SCRIPT = 'console.log("hello");\n'


def step_types_missing() -> str | None:
    """Why scenario 5 cannot run (``None`` when it can)."""
    try:
        import wfe_yaml
    except ImportError:
        return "wfe-yaml is not installed"
    if not hasattr(wfe_yaml, "load_workflows_from_str"):
        return "wfe_yaml has no load_workflows_from_str yet"
    try:
        from wfe_host.registry import default_registry

        names = {registered.name for registered in default_registry().step_executors()}
    except Exception as exc:  # a broken install must not stop the other scenarios
        return f"cannot list step types: {type(exc).__name__}: {exc}"
    missing = sorted({"shell", "deno"} - names)
    if missing:
        return f"wfe-yaml registers no {'/'.join(missing)} step type yet"
    return None


def deno_binary() -> str | None:
    try:
        import deno

        found: str = deno.find_deno_bin()
        return found
    except (ImportError, AttributeError, FileNotFoundError):
        return shutil.which("deno")


def _yaml_definition(kind: str, body: str) -> Any:
    import wfe_yaml

    key = "run" if kind == "shell" else "script"
    indented = "\n".join("          " + line for line in body.splitlines())
    text = (
        "workflow:\n"
        f"  id: bench-{kind}\n"
        "  version: 1\n"
        "  steps:\n"
        f"    - name: {kind}\n"
        f"      type: {kind}\n"
        "      config:\n"
        f"        {key}: |\n{indented}\n"
    )
    loaded = wfe_yaml.load_workflows_from_str(text)
    return loaded[0] if isinstance(loaded, (list, tuple)) else loaded


async def _direct(argv: list[str]) -> float:
    started = time.perf_counter()
    await anyio.run_process(argv, check=True)
    return time.perf_counter() - started


async def step_overhead(kind: str, count: int, warmup: int, workdir: str) -> dict[str, Any]:
    """Scenario 5: a one-step YAML workflow (shell or deno, in-memory host) against running
    the same command or script directly; both started the same way, one after the other."""
    if kind == "shell":
        argv = ["sh", "-c", SHELL_COMMAND]
        body = SHELL_COMMAND
    else:
        binary = deno_binary()
        if binary is None:
            raise RuntimeError("no deno binary")
        script = os.path.join(workdir, "bench.js")
        await anyio.Path(script).write_text(DENO_SCRIPT)
        argv = [binary, "run", script]
        body = DENO_SCRIPT
    definition = _yaml_definition(kind, body)
    direct: list[float] = []
    engine: list[float] = []
    async with WorkflowHost() as host:
        host.register(definition)
        for i in range(warmup + count):
            d = await _direct(argv)
            t0 = time.perf_counter()
            await _start_and_wait(host, definition.id)
            e = time.perf_counter() - t0
            if i >= warmup:
                direct.append(d)
                engine.append(e)
    direct_ms = percentile(direct, 50) * 1000
    engine_ms = percentile(engine, 50) * 1000
    return {
        "direct_ms": direct_ms,
        "workflow_ms": engine_ms,
        "overhead_ms": engine_ms - direct_ms,
        "ratio": engine_ms / direct_ms,
    }
