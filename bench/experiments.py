"""Candidate engine fixes, measured without editing the engine: ``python -m bench.experiments``.

Each *variant* monkeypatches the installed wfe packages in a worker process (never the
source tree) and runs scenario 2 (200 3-step workflows at once, on SQLite and in memory) or
scenario 3 (a 100-step in-memory workflow); variants run interleaved, ``--rounds`` times, and
the medians are printed. The patches are sketches of the fixes proposed in
docs/benchmarks.md, correct for one host with in-process lifecycle events only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import attrs

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "base": (),
    "no-watch": ("no_lifecycle_watch",),
    "no-watch+dequeue8": ("no_lifecycle_watch", "parallel_dequeue"),
    "no-decode": ("memory_row_without_decode",),
    "release-first": ("release_before_forgetting_pass",),
    "deliver-waits": ("delivery_waits_for_lease",),
    "event-lock-waits": ("event_lock_waits",),
    "enqueue-after-release": ("enqueue_after_release",),
    "enqueue-makes-due": ("enqueue_makes_due",),
}


def no_lifecycle_watch() -> None:
    """``wait_for_workflow`` waits on this host's own completion wake-up only, instead of
    also subscribing each call to every lifecycle event (O(waiters x events))."""
    from wfe_host.host import WorkflowHost

    async def wait_for_workflow(self: Any, workflow_id: str, timeout: float | None = None) -> Any:
        finished = anyio.Event()
        self._waiters.setdefault(workflow_id, set()).add(finished)
        try:
            with anyio.fail_after(timeout):
                while True:
                    instance = await self._load(workflow_id)
                    if instance.status.is_finished:
                        return instance
                    await finished.wait()
                    finished = anyio.Event()
                    self._waiters[workflow_id].add(finished)
        finally:
            waiters = self._waiters.get(workflow_id, set())
            waiters.discard(finished)
            if not waiters:
                self._waiters.pop(workflow_id, None)

    WorkflowHost.wait_for_workflow = wait_for_workflow  # type: ignore[method-assign]


def parallel_dequeue(loops: int = 8) -> None:
    """``consume`` keeps up to ``loops`` dequeues in flight, so their claims share a group
    commit instead of costing one commit round trip each, one after the other."""
    import wfe_host.host as host_module
    import wfe_host.runtime.consumer as consumer
    from wfe_core.errors import WfeError

    async def consume(
        queue: Any, name: Any, handler: Any, *, limit: int, visibility_timeout: float
    ) -> None:
        slots = anyio.Semaphore(limit)

        async def loop(tg: Any) -> None:
            while True:
                await slots.acquire()
                try:
                    message = await queue.dequeue(
                        name, timeout=consumer.DEQUEUE_WAIT, visibility_timeout=visibility_timeout
                    )
                except WfeError:
                    slots.release()
                    await anyio.sleep(consumer.BACKEND_PAUSE)
                    continue
                except BaseException:
                    slots.release()
                    raise
                if message is None:
                    slots.release()
                    continue
                tg.start_soon(consumer._handle, queue, message, handler, slots)

        async with anyio.create_task_group() as tg:
            for _ in range(min(loops, limit)):
                tg.start_soon(loop, tg)

    consumer.consume = consume
    host_module.consume = consume  # type: ignore[attr-defined]


def memory_row_without_decode() -> None:
    """MemoryPersistence builds an instance row from the instance itself instead of
    encoding it to JSON and decoding it again to read six columns."""
    import wfe_core.memory.persistence as mp

    def _instance_row(self: Any, instance: Any, revision: int, seq: int) -> Any:
        document = mp._encode(attrs.evolve(instance, revision=revision))
        return mp._InstanceRow(
            document=document,
            status=instance.status,
            definition_id=instance.definition_id,
            reference=instance.reference,
            next_execution=instance.next_execution,
            create_time=instance.create_time,
            complete_time=instance.complete_time,
            revision=revision,
            seq=seq,
        )

    mp.MemoryPersistence._instance_row = _instance_row  # type: ignore[method-assign]


def release_before_forgetting_pass() -> None:
    """``PassRunner.process`` releases the lease *before* it removes the pass from
    ``running`` (today: after), so an event delivered meanwhile is deferred to the pass's
    ``after`` callbacks instead of finding the lease held and retrying in 0.5 s."""
    from wfe_host.runtime.passes import PassRunner

    class _Running(dict[str, Any]):
        """``del`` only marks the entry; the patched ``_release`` drops it afterwards."""

        def __init__(self) -> None:
            super().__init__()
            self.pending: set[str] = set()

        def __delitem__(self, key: str) -> None:
            self.pending.add(key)

        def __setitem__(self, key: str, value: Any) -> None:
            self.pending.discard(key)
            super().__setitem__(key, value)

    original_init = PassRunner.__init__
    original_release = PassRunner._release

    def __init__(self: Any, host: Any) -> None:
        original_init(self, host)
        self.running = _Running()

    async def _release(self: Any, lease: Any) -> None:
        await original_release(self, lease)
        running = self.running
        if isinstance(running, _Running) and lease.key in running.pending:
            running.pending.discard(lease.key)
            dict.__delitem__(running, lease.key)

    PassRunner.__init__ = __init__  # type: ignore[method-assign]
    PassRunner._release = _release  # type: ignore[method-assign]


def delivery_waits_for_lease() -> None:
    """When the workflow's lease is held but no pass of this host is registered yet (a pass
    that has just acquired it), event delivery waits for the lease (the lock wakes in-process
    waiters on release) instead of returning "busy" and being retried 0.5 s later."""
    from wfe_host.runtime.events import EventDelivery

    original = EventDelivery._deliver

    async def _deliver(self: Any, subscription: Any, event: Any) -> bool | None:
        host = self.host
        for _ in range(50):
            delivered: bool | None = await original(self, subscription, event)
            if delivered is not False:
                return delivered
            lease = await host.lock.acquire(
                subscription.workflow_id, owner=host.passes.owner(), ttl=1.0, wait=1.0
            )
            if lease is not None:
                await host.passes._release(lease)
        return False

    EventDelivery._deliver = _deliver  # type: ignore[method-assign]


def event_lock_waits() -> None:
    """``EventDelivery.process`` waits (up to 2 s, woken in-process on release) for the
    ``event:<id>`` lease instead of returning BUSY_RETRY (0.5 s) at once: the holder is
    usually this host's own delivery of the same event, just deferred to a pass's end."""
    from wfe_core.memory.lock import MemoryLock

    classes: list[Any] = [MemoryLock]
    try:
        from wfe_sqlite.lock import SqliteLock

        classes.append(SqliteLock)
    except ImportError:
        pass
    for cls in classes:
        original = cls.acquire

        async def acquire(
            self: Any, key: str, *, owner: str, ttl: float, wait: float = 0.0, _o: Any = original
        ) -> Any:
            if key.startswith("event:") and wait == 0.0:
                wait = 2.0
            return await _o(self, key, owner=owner, ttl=ttl, wait=wait)

        cls.acquire = acquire


def enqueue_after_release() -> None:
    """``EventDelivery._deliver`` queues the resumed workflow *after* releasing its lease
    (today: before), so the pass it triggers does not find the lease still held and come
    back ``BUSY_RETRY`` (0.5 s) later."""
    from wfe_host.runtime.events import EventDelivery

    original = EventDelivery._deliver

    async def _deliver(self: Any, subscription: Any, event: Any) -> bool | None:
        host = self.host
        queued: list[str] = []

        async def collect(workflow_id: str) -> None:
            queued.append(workflow_id)

        host._enqueue_workflow, real = collect, host._enqueue_workflow
        try:
            delivered: bool | None = await original(self, subscription, event)
        finally:
            host._enqueue_workflow = real
        for workflow_id in queued:
            await real(workflow_id)
        return delivered

    EventDelivery._deliver = _deliver  # type: ignore[method-assign]


def enqueue_makes_due() -> None:
    """MemoryQueue.enqueue of an id that is already waiting *with a delay* (a requeue after
    BUSY_RETRY) makes it visible now, instead of being a no-op that leaves the new work
    waiting for the old delay."""
    from anyio.lowlevel import checkpoint

    import wfe_core.memory.queue as mq

    async def enqueue(self: Any, queue: Any, item_id: str) -> None:
        await checkpoint()
        state = self._queue(queue)
        now = anyio.current_time()
        waiting = state.waiting.get(item_id)
        if waiting is None:
            state.waiting[item_id] = mq._Waiting(now)
            self._notify(state)
        elif waiting.visible_at > now:
            waiting.visible_at = now
            self._notify(state)

    mq.MemoryQueue.enqueue = enqueue  # type: ignore[method-assign]


def run_variant(variant: str, scenario: str, workdir: str) -> dict[str, float]:
    """In this process: apply ``variant``'s patches and measure ``scenario``."""
    for patch in VARIANTS[variant]:
        globals()[patch]()
    from bench.peers import wfe

    if scenario == "2-sqlite":
        return anyio.run(wfe.burst, "sqlite", f"{workdir}/experiment.db", 200, 10)
    if scenario == "2-memory":
        return anyio.run(wfe.burst, "memory", None, 200, 10)
    if scenario in ("4-memory", "4-sqlite"):
        backend = scenario.split("-")[1]
        return anyio.run(wfe.event_round_trip, backend, f"{workdir}/experiment.db", 60, 5)
    return anyio.run(wfe.memory_steps, 100, 10, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="base,no-watch,no-watch+dequeue8")
    parser.add_argument(
        "--scenarios", default="2-sqlite,2-memory", help="2-sqlite, 2-memory, 3, 4-memory, 4-sqlite"
    )
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SCENARIO", "DIR"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(*args.child)))
        return 0
    variants = args.variants.split(",")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="wfe-experiments-") as workdir:
        for round_no in range(args.rounds):
            for scenario in args.scenarios.split(","):
                shift = round_no % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    done = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "bench.experiments",
                            "--child",
                            variant,
                            scenario,
                            workdir,
                        ],
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    metrics = json.loads(done.stdout.strip().splitlines()[-1])
                    results.setdefault((scenario, variant), []).append(metrics)
                    print(
                        f"  {round_no + 1}  {scenario:<9} {variant:<20} {metrics}", file=sys.stderr
                    )
    print(f"{'scenario':<10} {'variant':<20} medians of {args.rounds} rounds")
    for (scenario, variant), runs in results.items():
        medians = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        print(f"{scenario:<10} {variant:<20} {medians}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
