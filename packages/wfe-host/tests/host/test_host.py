"""WorkflowHost behaviour beyond the shared scenarios: middleware, lifecycle, listing,
search, purge, several hosts on one store, restarts, and the one-call runner."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import pytest

from wfe_core import (
    ErrorBehavior,
    ExecutionResult,
    LifecycleEventType,
    StepBody,
    StepContext,
    WorkflowBuilder,
    WorkflowInstance,
    WorkflowMiddleware,
    WorkflowStatus,
)
from wfe_core.errors import (
    DefinitionError,
    DefinitionNotFoundError,
    InvalidInputError,
    WorkflowTimeoutError,
)
from wfe_core.memory import (
    MemoryLifecycle,
    MemoryLock,
    MemoryPersistence,
    MemoryQueue,
    MemorySearch,
)
from wfe_host import HostOptions, WorkflowHost, run_workflow

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@attrs.define
class Counter:
    count: int = 0
    log: list[str] = attrs.Factory(list)


def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


def simple(definition_id: str = "simple") -> Any:
    return WorkflowBuilder(Counter).start_with(bump).then(bump).build(definition_id)


async def test_step_middleware_wraps_every_step() -> None:
    seen: list[str] = []

    async def middleware(ctx: StepContext, call_next: Any) -> ExecutionResult:
        seen.append(f"before {ctx.step.id}")
        result: ExecutionResult = await call_next()
        seen.append(f"after {ctx.step.id}")
        return result

    async with WorkflowHost(step_middleware=[middleware]) as host:
        host.register(simple())
        workflow_id = await host.start_workflow("simple")
        await host.wait_for_workflow(workflow_id, timeout=10)
    assert seen == ["before 0", "after 0", "before 1", "after 1"]


async def test_workflow_middleware_runs_before_and_after() -> None:
    calls: list[tuple[str, WorkflowStatus]] = []

    class Audit(WorkflowMiddleware):
        async def before_workflow(self, instance: WorkflowInstance) -> None:
            instance.reference = "audited"
            calls.append(("before", instance.status))

        async def after_workflow(self, instance: WorkflowInstance) -> None:
            calls.append(("after", instance.status))

    async with WorkflowHost() as host:
        host.add_workflow_middleware(Audit())
        host.register(simple())
        workflow_id = await host.start_workflow("simple")
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.reference == "audited"
    assert calls == [("before", WorkflowStatus.RUNNABLE), ("after", WorkflowStatus.COMPLETE)]


async def test_failure_publishes_error_and_failed_events() -> None:
    def fail(ctx: StepContext) -> None:
        raise ValueError("bad input")

    definition = WorkflowBuilder(Counter).start_with(fail).build("failing")
    async with WorkflowHost() as host:
        host.register(definition)
        events = host.lifecycle_events()
        workflow_id = await host.start_workflow("failing")
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
        types: list[LifecycleEventType] = []
        messages: list[str | None] = []
        with anyio.fail_after(5):
            async for event in events:
                types.append(event.type)
                messages.append(event.message)
                if event.type == LifecycleEventType.WORKFLOW_FAILED:
                    break
        errors = await host.persistence.get_errors(workflow_id)
    assert instance.status == WorkflowStatus.FAILED
    assert LifecycleEventType.WORKFLOW_ERROR in types
    assert any("bad input" in (m or "") for m in messages)
    assert errors
    assert errors[0].message == "ValueError: bad input"
    assert errors[0].traceback


async def test_retry_backoff_and_attempts_are_recorded() -> None:
    attempts: list[int] = []
    keys: set[str] = set()

    def flaky(ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        keys.add(ctx.idempotency_key)
        if ctx.attempt < 4:
            raise RuntimeError("not yet")

    definition = (
        WorkflowBuilder(Counter)
        .start_with(flaky)
        .on_error(ErrorBehavior.retry(interval=0.05, max_retries=5, backoff=2.0, max_interval=0.1))
        .build("flaky")
    )
    started = time.monotonic()
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow("flaky")
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert attempts == [1, 2, 3, 4]
    assert len(keys) == 1  # stable across retries
    assert time.monotonic() - started >= 0.05 + 0.1 + 0.1 - 0.02  # 0.05, then capped at 0.1


async def test_definition_default_error_behavior_applies() -> None:
    def fail(ctx: StepContext) -> None:
        raise RuntimeError("x")

    definition = (
        WorkflowBuilder(Counter)
        .on_error(ErrorBehavior.terminate())
        .start_with(fail)
        .build("default-behaviour")
    )
    async with WorkflowHost() as host:
        host.register(definition)
        instance = await host.wait_for_workflow(
            await host.start_workflow("default-behaviour"), timeout=10
        )
    assert instance.status == WorkflowStatus.TERMINATED


async def test_compensate_outside_a_saga_undoes_the_workflow_and_fails_it() -> None:
    def fail(ctx: StepContext) -> None:
        raise RuntimeError("late failure")

    definition = (
        WorkflowBuilder(Counter)
        .start_with(lambda ctx: ctx.data.log.append("a"))
        .compensate_with(lambda ctx: ctx.data.log.append("undo a"))
        .then(lambda ctx: ctx.data.log.append("b"))
        .compensate_with(lambda ctx: ctx.data.log.append("undo b"))
        .then(fail)
        .on_error(ErrorBehavior.compensate())
        .build("root-compensation")
    )
    async with WorkflowHost() as host:
        host.register(definition)
        instance = await host.wait_for_workflow(
            await host.start_workflow("root-compensation"), timeout=10
        )
    assert instance.data.log == ["a", "b", "undo b", "undo a"]
    assert instance.status == WorkflowStatus.FAILED


async def test_register_step_injects_dependencies() -> None:
    class Greeter(StepBody):
        def __init__(self, greeting: str = "hi") -> None:
            self.greeting = greeting

        async def run(self, ctx: StepContext) -> ExecutionResult:
            ctx.data.log.append(self.greeting)
            return ExecutionResult.next()

    definition = WorkflowBuilder(Counter).start_with(Greeter).build("greet")
    async with WorkflowHost() as host:
        host.register_step(Greeter, lambda: Greeter("hello from DI"))
        host.register(definition)
        instance = await host.wait_for_workflow(await host.start_workflow("greet"), timeout=10)
    assert instance.data.log == ["hello from DI"]


async def test_unknown_definition_is_a_clear_error() -> None:
    async with WorkflowHost() as host:
        host.register(simple())
        with pytest.raises(DefinitionNotFoundError, match=r"nope.*registered: simple"):
            await host.start_workflow("nope")


async def test_versions_latest_by_default() -> None:
    v1 = WorkflowBuilder(Counter).start_with(bump).build("versioned", version=1)
    v2 = WorkflowBuilder(Counter).start_with(bump).then(bump).build("versioned", version=2)
    async with WorkflowHost() as host:
        host.register(v1)
        host.register(v2)
        latest = await host.wait_for_workflow(await host.start_workflow("versioned"), timeout=10)
        first = await host.wait_for_workflow(
            await host.start_workflow("versioned", version=1), timeout=10
        )
    assert (latest.version, latest.data.count) == (2, 2)
    assert (first.version, first.data.count) == (1, 1)


async def test_wait_for_workflow_times_out() -> None:
    definition = WorkflowBuilder(Counter).wait_for("never", key="k").build("waits")
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow("waits")
        with pytest.raises(WorkflowTimeoutError):
            await host.wait_for_workflow(workflow_id, timeout=0.2)


async def test_list_search_and_purge() -> None:
    async with WorkflowHost() as host:
        host.register(simple())
        ids = [await host.start_workflow("simple", reference=f"order-{n}") for n in range(3)]
        for workflow_id in ids:
            await host.wait_for_workflow(workflow_id, timeout=10)
        page = await host.list_workflows(status="complete", definition_id="simple")
        assert page.total == 3
        assert all(isinstance(i.data, Counter) for i in page.items)
        found = await host.search("order-1")
        assert [i.reference for i in found.items] == ["order-1"]
        assert (await host.search(filters={"status": "complete"}, take=2)).total == 3
        assert await host.purge(older_than=timedelta(seconds=-1), statuses=["complete"]) == 3
        assert (await host.list_workflows()).total == 0


async def test_search_provider_is_kept_up_to_date() -> None:
    async with WorkflowHost(search=MemorySearch()) as host:
        host.register(simple())
        workflow_id = await host.start_workflow("simple", reference="indexed-ref")
        await host.wait_for_workflow(workflow_id, timeout=10)
        with anyio.fail_after(10):
            while True:
                page = await host.search("indexed-ref")
                if page.items and page.items[0].status == WorkflowStatus.COMPLETE:
                    break
                await anyio.sleep(0.02)
    assert page.items[0].id == workflow_id


async def test_host_without_workers_only_stores() -> None:
    persistence, lock, queue = MemoryPersistence(), MemoryLock(), MemoryQueue()
    lifecycle = MemoryLifecycle()
    async with WorkflowHost(
        persistence, lock, queue, lifecycle=lifecycle, options=HostOptions(run_workers=False)
    ) as client:
        client.register(simple())
        workflow_id = await client.start_workflow("simple")
        await anyio.sleep(0.2)
        assert (await client.get_workflow(workflow_id)).status == WorkflowStatus.RUNNABLE
        async with WorkflowHost(persistence, lock, queue, lifecycle=lifecycle) as worker:
            worker.register(simple())
            # The client is woken by the worker's lifecycle events.
            instance = await client.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE


async def test_two_hosts_on_one_store_run_each_step_once() -> None:
    persistence, lock, queue = MemoryPersistence(), MemoryLock(), MemoryQueue()
    lifecycle = MemoryLifecycle()
    runs: list[str] = []

    async def step(ctx: StepContext) -> None:
        runs.append(ctx.idempotency_key)
        await anyio.sleep(0.01)
        ctx.data.count += 1

    definition = (
        WorkflowBuilder(Counter)
        .start_with(step)
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(step)).branch(lambda b: b.start_with(step))
        )
        .then(step)
        .build("shared")
    )
    async with (
        WorkflowHost(persistence, lock, queue, lifecycle=lifecycle) as one,
        WorkflowHost(persistence, lock, queue, lifecycle=lifecycle) as two,
    ):
        one.register(definition)
        two.register(definition)
        ids = [await (one if n % 2 else two).start_workflow("shared") for n in range(20)]
        finished = [await one.wait_for_workflow(i, timeout=30) for i in ids]
    assert all(i.status == WorkflowStatus.COMPLETE for i in finished)
    assert all(i.data.count == 4 for i in finished)
    assert len(runs) == len(set(runs)) == 80


async def test_sleeping_workflow_survives_a_host_restart() -> None:
    persistence = MemoryPersistence()
    definition = (
        WorkflowBuilder(Counter)
        .start_with(bump)
        .delay(timedelta(seconds=0.3))
        .then(bump)
        .build("restart")
    )
    async with WorkflowHost(persistence) as first:
        first.register(definition)
        events = first.lifecycle_events()
        workflow_id = await first.start_workflow("restart")
        with anyio.fail_after(10):
            async for event in events:
                if event.type == LifecycleEventType.STEP_COMPLETED:
                    break
    # A new host (fresh queue and lock) finds the due work through the scheduler.
    async with WorkflowHost(persistence) as second:
        second.register(definition)
        instance = await second.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.count == 2


async def test_idle_host_uses_no_cpu() -> None:
    definition = WorkflowBuilder(Counter).wait_for("never", key="k").build("idle")
    async with WorkflowHost() as host:
        host.register(definition)
        await host.start_workflow("idle")
        await anyio.sleep(0.2)
        before = time.process_time()
        await anyio.sleep(1.0)
        used = time.process_time() - before
    assert used < 0.2, f"an idle host used {used:.3f} s of CPU in 1 s"


async def test_load_definitions_uses_the_format_for_the_suffix(tmp_path: Path) -> None:
    loaded: list[tuple[Path, Any]] = []

    def load(path: Path, config: Any) -> list[Any]:
        loaded.append((path, config))
        return [simple("from-file")]

    @attrs.define
    class Spec:
        load: Any

    @attrs.define
    class Found:
        spec: Spec

    class Registry:
        def definition_format_for(self, path: Any) -> Found:
            return Found(Spec(load))

    file = tmp_path / "flow.test"
    file.write_text("")
    async with WorkflowHost(registry=Registry()) as host:  # type: ignore[arg-type]
        definitions = host.load_definitions(file, {"x": "1"})
        instance = await host.wait_for_workflow(await host.start_workflow("from-file"), timeout=10)
    assert [d.id for d in definitions] == ["from-file"]
    assert loaded == [(file, {"x": "1"})]
    assert instance.status == WorkflowStatus.COMPLETE


async def test_from_settings_builds_memory_host() -> None:
    async with WorkflowHost.from_settings({"persistence": {"provider": "memory"}}) as host:
        host.register(simple())
        instance = await host.wait_for_workflow(await host.start_workflow("simple"), timeout=10)
    assert instance.data.count == 2


async def test_invalid_definition_is_refused() -> None:
    with pytest.raises(DefinitionError, match="empty branch"):
        WorkflowBuilder(Counter).start_with(bump).if_do(lambda d: True, lambda b: b).build("bad")


def test_run_workflow_runs_to_the_end() -> None:
    instance = run_workflow(simple(), Counter(count=10), timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data.count == 12


async def test_a_step_interrupted_by_a_crash_runs_again_with_the_next_attempt() -> None:
    persistence = MemoryPersistence()
    runs: list[tuple[int, str]] = []
    started = anyio.Event()

    async def slow(ctx: StepContext) -> None:
        runs.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt == 1:
            started.set()
            await anyio.sleep_forever()  # the host "crashes" while this runs

    definition = WorkflowBuilder(Counter).start_with(slow).then(bump).build("crash")
    # No grace period: a crash lets nothing finish.
    async with WorkflowHost(persistence, options=HostOptions(shutdown_grace=0)) as first:
        first.register(definition)
        workflow_id = await first.start_workflow("crash")
        with anyio.fail_after(10):
            await started.wait()
    async with WorkflowHost(persistence) as second:
        second.register(definition)
        instance = await second.wait_for_workflow(workflow_id, timeout=10)
    assert instance.status == WorkflowStatus.COMPLETE
    assert [attempt for attempt, _ in runs] == [1, 2]
    assert runs[0][1] == runs[1][1]


async def test_suspend_lets_the_running_step_finish_and_stops_there() -> None:
    running = anyio.Event()

    async def slow(ctx: StepContext) -> None:
        running.set()
        await anyio.sleep(0.3)
        ctx.data.log.append("slow done")

    definition = (
        WorkflowBuilder(Counter)
        .start_with(slow)
        .then(lambda ctx: ctx.data.log.append("next"))
        .build("suspend-midway")
    )
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow("suspend-midway")
        with anyio.fail_after(10):
            await running.wait()
        assert await host.suspend_workflow(workflow_id)
        suspended = await host.get_workflow(workflow_id)
        assert suspended.status == WorkflowStatus.SUSPENDED
        assert suspended.data.log == ["slow done"]
        assert await host.resume_workflow(workflow_id)
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
    assert instance.data.log == ["slow done", "next"]


async def test_a_timer_is_not_held_up_by_another_workflows_long_pass() -> None:
    async def long_step(ctx: StepContext) -> None:
        await anyio.sleep(3)

    slow = WorkflowBuilder(Counter).start_with(long_step).build("long-pass")
    quick = WorkflowBuilder(Counter).delay(timedelta(milliseconds=200)).then(bump).build("timer")
    async with WorkflowHost() as host:
        host.register(slow)
        host.register(quick)
        await host.start_workflow("long-pass")
        await anyio.sleep(0.1)  # the long pass is running (its instance stays due meanwhile)
        started = time.monotonic()
        instance = await host.wait_for_workflow(await host.start_workflow("timer"), timeout=10)
        elapsed = time.monotonic() - started
    assert instance.data.count == 1
    assert elapsed < 2.0, f"a 0.2 s delay took {elapsed:.2f} s"


async def test_a_step_can_start_workflows_and_publish_events_through_ctx_host() -> None:
    child = WorkflowBuilder(Counter).start_with(bump).build("spawned")

    async def spawn(ctx: StepContext) -> None:
        child_id = await ctx.host.start_workflow("spawned", Counter(count=5), reference="kid")
        ctx.data.log.append(child_id)
        await ctx.host.publish_event("go", ctx.workflow_id, "from a step")

    parent = (
        WorkflowBuilder(Counter)
        .start_with(spawn)
        .wait_for("go", key=lambda data, ctx: ctx.workflow_id)
        .output(log=lambda step, data: [*data.log, step.event_data])
        .build("spawner")
    )
    async with WorkflowHost() as host:
        host.register(child)
        host.register(parent)
        instance = await host.wait_for_workflow(await host.start_workflow("spawner"), timeout=10)
        spawned = await host.wait_for_workflow(instance.data.log[0], timeout=10)
    assert instance.data.log[1] == "from a step"
    assert (spawned.reference, spawned.data.count) == ("kid", 6)


async def test_purge_also_removes_search_entries() -> None:
    search = MemorySearch()
    async with WorkflowHost(search=search) as host:
        host.register(simple())
        workflow_id = await host.start_workflow("simple", reference="to-purge")
        await host.wait_for_workflow(workflow_id, timeout=10)
        with anyio.fail_after(10):
            # Indexing is asynchronous (the index queue) and announces nothing: look again.
            while True:
                if (await host.search("to-purge")).items:
                    break
                await anyio.sleep(0.02)
        assert await host.purge(older_than=timedelta(seconds=-1)) == 1
        assert (await host.search("to-purge")).total == 0


async def test_data_a_store_cannot_encode_is_refused_at_start_storing_nothing() -> None:
    persistence = MemoryPersistence()
    async with WorkflowHost(persistence=persistence) as host:
        host.register(WorkflowBuilder(dict).start_with(bump).build("untyped"))
        with pytest.raises(InvalidInputError) as info:
            await host.start_workflow("untyped", data={"z": complex(1, 2)})
        assert str(info.value) == (
            "bad inputs for workflow 'untyped': the workflow data cannot be stored: "
            "Object of type complex is not JSON serializable"
        )
        assert (await host.list_workflows()).total == 0


@attrs.define
class Typed:
    n: int = 0


async def test_stored_data_that_no_longer_fits_its_type_fails_the_workflow_once() -> None:
    """A workflow whose data type changed under it cannot ever run: it ends failed with the
    reason recorded, once, instead of a pass that fails for ever; its data is kept."""
    persistence = MemoryPersistence()
    queue = MemoryQueue()
    # Started by a client (no workers) while the definition's data was a plain dict ...
    async with WorkflowHost(
        persistence=persistence, queue=queue, options=HostOptions(run_workers=False)
    ) as client:
        client.register(WorkflowBuilder(dict).start_with(bump).build("poison"))
        workflow_id = await client.start_workflow("poison", data={"count": "not a number"})
    # ... and run by a worker where it is typed, and the stored value does not fit.
    async with WorkflowHost(persistence=persistence, queue=queue) as host:
        host.register(WorkflowBuilder(Counter).start_with(bump).build("poison"))
        instance = await host.wait_for_workflow(workflow_id, timeout=10)
        assert instance.status == WorkflowStatus.FAILED
        assert instance.data == {"count": "not a number"}
        errors = await persistence.get_errors(workflow_id)
        assert len(errors) == 1
        assert errors[0].pointer_id is None
        assert errors[0].message.startswith("its stored data does not fit Counter: ")
        assert instance.pointers == []  # no step ran


async def test_register_refuses_an_error_behaviour_on_a_container_naming_the_step() -> None:
    definition = (
        WorkflowBuilder(Counter)
        .start_with(bump)
        .parallel(lambda p: p.branch(lambda b: b.start_with(bump)))
        .build("assembled")
    )
    definition.steps[1].error_behavior = ErrorBehavior.terminate()
    async with WorkflowHost() as host:
        with pytest.raises(DefinitionError, match=r"step 1 \(Parallel\) sets an error behaviour"):
            host.register(definition)
        with pytest.raises(DefinitionNotFoundError):
            await host.start_workflow("assembled")
