"""A child process for the multi-process tests: ``python _child.py MODE VALKEY_URL PREFIX ...``.

It prints one line per fact the parent checks (JSON), flushing each, so the parent can follow
it live and kill it at a known point.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio

from wfe_core.models import LifecycleEvent
from wfe_core.providers import QueueName
from wfe_core.serialization import from_primitive
from wfe_valkey.lifecycle import ValkeyLifecycle
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.options import ValkeyOptions
from wfe_valkey.queue import ValkeyQueue


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def take_one(url: str, options: ValkeyOptions, visibility: float) -> None:
    """Take one item, report it, then hang until killed (never acking it)."""
    async with ValkeyQueue(url, options) as queue:
        message = await queue.dequeue(QueueName.WORKFLOW, timeout=30, visibility_timeout=visibility)
        assert message is not None
        say(item=message.item_id, attempt=message.attempt, receipt=message.receipt)
        await anyio.sleep(3600)


async def hold_lock(url: str, options: ValkeyOptions, key: str, ttl: float) -> None:
    """Take ``key``, report the lease's token, then hang until killed (never releasing it)."""
    async with ValkeyLock(url, options) as lock:
        lease = await lock.acquire(key, owner=f"pid-{os.getpid()}", ttl=ttl)
        assert lease is not None
        say(token=lease.token)
        await anyio.sleep(3600)


async def relay(url: str, options: ValkeyOptions) -> None:
    """Publish each lifecycle event read from stdin (one JSON line each); answer each."""
    async with ValkeyLifecycle(url, options) as lifecycle:
        say(ready=True)
        stdin = sys.stdin
        while True:
            line = await anyio.to_thread.run_sync(stdin.readline)
            if not line:
                return
            await lifecycle.publish(from_primitive(json.loads(line), LifecycleEvent))
            await lifecycle.drain()  # sent, not only handed to the outbox
            say(published=True)


# -- a host in a child process --------------------------------------------------------------
STEPS = ("one", "two", "three", "four")


def chaos_flow(side_effects: str, step_seconds: float = 0.05) -> Any:
    """Four steps, each bumping ``count``, appending its name to ``log`` and writing a
    side-effect line (pid, workflow, step, attempt) to a file."""
    import attrs

    from wfe_core import StepContext, WorkflowBuilder

    @attrs.define
    class Progress:
        count: int = 0
        log: list[str] = attrs.Factory(list)

    def step(name: str) -> Any:
        async def run(ctx: StepContext) -> None:
            await anyio.sleep(step_seconds)
            with open(side_effects, "a") as out:  # noqa: ASYNC230 - a short append
                out.write(f"{os.getpid()} {ctx.workflow.id} {name} {ctx.attempt}\n")
            ctx.data.count += 1
            ctx.data.log.append(name)

        run.__name__ = name
        return run

    builder = WorkflowBuilder(Progress).start_with(step(STEPS[0]))
    for name in STEPS[1:]:
        builder = builder.then(step(name))
    return builder.build("chaos-flow", version=1)


#: How often the hosts of these tests sweep persistence for work the queue lost (seconds).
RECOVERY_SECONDS = 1.0


def host_settings(
    valkey_url: str, prefix: str, db_url: str, concurrency: int = 100
) -> dict[str, Any]:
    """Instances in SQLite; lock, queue and lifecycle in Valkey; short leases, so the leases
    of a killed host lapse quickly."""
    valkey = {"url": valkey_url, "options": {"key_prefix": prefix, "retry_timeout": 20.0}}
    return {
        "persistence": db_url,
        "lock": valkey,
        "queue": valkey,
        "lifecycle": valkey,
        "host": {"lease_seconds": 1.5, "concurrency": concurrency},
    }


async def run_host(
    valkey_url: str, prefix: str, db_url: str, side_effects: str, concurrency: int, step: float
) -> None:
    """Run a host with workers until killed."""
    from wfe_host import WorkflowHost

    host = WorkflowHost.from_settings(host_settings(valkey_url, prefix, db_url, concurrency))
    host.scheduler.recovery_seconds = RECOVERY_SECONDS
    async with host:
        host.register(chaos_flow(side_effects, step))
        say(ready=True)
        await anyio.sleep(3600)


def main() -> None:
    mode, url, prefix, *args = sys.argv[1:]
    options = ValkeyOptions(key_prefix=prefix)
    if mode == "take-one":
        anyio.run(take_one, url, options, float(args[0]))
    elif mode == "hold-lock":
        anyio.run(hold_lock, url, options, args[0], float(args[1]))
    elif mode == "relay":
        anyio.run(relay, url, options)
    elif mode == "host":
        db_url, side_effects, concurrency, step = args
        anyio.run(run_host, url, prefix, db_url, side_effects, int(concurrency), float(step))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
