"""A child process for the multi-process tests: ``python _child.py MODE URL [ARGS...]``.

It prints one line per fact the parent checks (JSON), flushing each, so the parent can follow
it live and kill it at a known point.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from wfe_core.providers import QueueName
from wfe_sqlite import SqliteLock, SqliteQueue


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def consume(url: str, idle: float) -> None:
    """Take items until the queue stayed empty for ``idle`` seconds; report each."""
    async with SqliteQueue(url) as queue:
        say(ready=True)
        while True:
            message = await queue.dequeue(QueueName.WORKFLOW, timeout=idle, visibility_timeout=60)
            if message is None:
                break
            say(item=message.item_id, attempt=message.attempt)
            await queue.ack(message)
        say(done=True)


def _bump(path: Path) -> None:
    # Blocking on purpose: a read-modify-write with a window a second holder would hit.
    value = int(path.read_text())
    time.sleep(0.002)
    path.write_text(str(value + 1))


async def contend(url: str, rounds: int, counter: str) -> None:
    """Increment a plain file's counter ``rounds`` times, each under the lock: a lost update
    would show that two processes held the lock at once."""
    path = Path(counter)
    async with SqliteLock(url) as lock:
        for _ in range(rounds):
            lease = await lock.acquire("counter", owner=f"pid-{os.getpid()}", ttl=30, wait=60)
            assert lease is not None
            _bump(path)
            say(token=lease.token)
            await lock.release(lease)
        say(done=True)


async def hold(url: str, ttl: float) -> None:
    """Take the lock and one queue item with short lapses, report, then hang until killed."""
    async with SqliteLock(url) as lock, SqliteQueue(url) as queue:
        lease = await lock.acquire("crash", owner=f"pid-{os.getpid()}", ttl=ttl)
        assert lease is not None
        message = await queue.dequeue(QueueName.WORKFLOW, timeout=10, visibility_timeout=ttl)
        assert message is not None
        say(token=lease.token, item=message.item_id, attempt=message.attempt)
        await anyio.sleep(3600)


async def create_until_killed(url: str, writers: int) -> None:
    """Create instances from ``writers`` tasks at once (so some share a commit) until killed,
    reporting each id as soon as its ``create_workflow`` returned."""
    from wfe_core.models import WorkflowInstance
    from wfe_sqlite import SqlitePersistence

    async def create(persistence: SqlitePersistence) -> None:
        while True:
            instance = WorkflowInstance("flow", 1)
            await persistence.create_workflow(instance)
            say(created=instance.id)

    async with SqlitePersistence(url) as persistence, anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(create, persistence)


# -- a host in a child process --------------------------------------------------------------
STEPS = ("one", "two", "three", "four")


def crash_flow(side_effects: str) -> Any:
    """The workflow of the crash test: four steps, each bumping ``count``, appending its name
    to ``log`` and writing a side-effect line (pid, workflow, step, attempt) to a file."""
    import attrs

    from wfe_core import StepContext, WorkflowBuilder

    @attrs.define
    class Progress:
        count: int = 0
        log: list[str] = attrs.Factory(list)

    def step(name: str) -> Any:
        async def run(ctx: StepContext) -> None:
            await anyio.sleep(0.1)
            with open(side_effects, "a") as out:  # noqa: ASYNC230 - a short append
                out.write(f"{os.getpid()} {ctx.workflow.id} {name} {ctx.attempt}\n")
            ctx.data.count += 1
            ctx.data.log.append(name)

        run.__name__ = name
        return run

    builder = WorkflowBuilder(Progress).start_with(step(STEPS[0]))
    for name in STEPS[1:]:
        builder = builder.then(step(name))
    return builder.build("crash-flow", version=1)


def host_settings(url: str) -> dict[str, Any]:
    # Short leases, so the leases of a killed host lapse quickly.
    return {"persistence": url, "host": {"lease_seconds": 1.5}}


async def run_host(url: str, side_effects: str) -> None:
    """Run a host with workers on ``url`` until killed."""
    from wfe_host import WorkflowHost

    async with WorkflowHost.from_settings(host_settings(url)) as host:
        host.register(crash_flow(side_effects))
        say(ready=True)
        await anyio.sleep(3600)


async def start_and_hang(url: str, side_effects: str, count: int) -> None:
    """Start ``count`` crash-flow workflows from a host with workers (each created by its
    first pass's first write), report each id once ``start_workflow`` returned, then hang
    until killed."""
    from wfe_host import WorkflowHost

    async with WorkflowHost.from_settings(host_settings(url)) as host:
        host.register(crash_flow(side_effects))
        for _ in range(count):
            say(started=await host.start_workflow("crash-flow"))
        await anyio.sleep(3600)


def blocking_flow(side_effects: str, deadline: float = 60.0) -> Any:
    """The workflow of the blocked-loop test: ``work`` then ``after``, each writing a side
    effect line (pid, step) and appending ``step:pid`` to ``log``. The first run of ``work``
    (no side effect yet) blocks its event loop, as CPU-bound code would, until another
    process has finished the workflow and closed its host (its ``done`` line), or
    ``deadline`` seconds passed."""
    import attrs

    from wfe_core import StepContext, WorkflowBuilder

    @attrs.define
    class Log:
        log: list[str] = attrs.Factory(list)

    def lines() -> list[list[str]]:
        path = Path(side_effects)
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def note(ctx: StepContext, name: str) -> None:
        with open(side_effects, "a") as out:
            out.write(f"{os.getpid()} {name}\n")
        ctx.data.log.append(f"{name}:{os.getpid()}")

    async def work(ctx: StepContext) -> None:
        first = not lines()
        note(ctx, "work")
        if first:
            me = str(os.getpid())
            until = time.monotonic() + deadline
            # Blocks the event loop on purpose: no await, so no lease renewal either.
            while time.monotonic() < until and not any(
                line[1] == "done" and line[0] != me for line in lines()
            ):
                time.sleep(0.05)  # noqa: ASYNC251

    async def after(ctx: StepContext) -> None:
        note(ctx, "after")

    return WorkflowBuilder(Log).start_with(work).then(after).build("blocking-flow", version=1)


async def finish_one(url: str, workflow_id: str, side_effects: str) -> None:
    """Run a host with workers (short leases) on ``url`` until ``workflow_id`` finished."""
    from wfe_host import WorkflowHost

    async with WorkflowHost.from_settings(host_settings(url)) as host:
        host.register(blocking_flow(side_effects))
        say(ready=True)
        finished = await host.wait_for_workflow(workflow_id, timeout=60)
    # After the host stopped (and gave its leases back).
    with open(side_effects, "a") as out:  # noqa: ASYNC230 - a short append
        out.write(f"{os.getpid()} done\n")
    say(status=str(finished.status), pid=os.getpid())


def main() -> None:
    mode, url, *args = sys.argv[1:]
    if mode == "consume":
        anyio.run(consume, url, float(args[0]))
    elif mode == "contend":
        anyio.run(contend, url, int(args[0]), args[1])
    elif mode == "hold":
        anyio.run(hold, url, float(args[0]))
    elif mode == "host":
        anyio.run(run_host, url, args[0])
    elif mode == "start":
        anyio.run(start_and_hang, url, args[0], int(args[1]))
    elif mode == "create":
        anyio.run(create_until_killed, url, int(args[0]))
    elif mode == "finish-one":
        anyio.run(finish_one, url, args[0], args[1])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
