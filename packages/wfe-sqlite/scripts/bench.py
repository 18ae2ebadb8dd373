"""Quick throughput figures of the SQLite providers (run it with ``uv run python``).

Prints persist_workflow calls per second (one task after another, and many tasks at once,
where group commit shares each sync), and queue and lock round trips, for
``synchronous=full`` (the default) and ``normal``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Literal

import anyio

from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowInstance
from wfe_core.providers import QueueName
from wfe_core.spi import utcnow
from wfe_sqlite import SqliteLock, SqliteOptions, SqlitePersistence, SqliteQueue


def _instance() -> WorkflowInstance:
    # A typical small instance: some data and a few pointers.
    return WorkflowInstance(
        "bench",
        1,
        data={"order": 42, "items": ["a", "b", "c"], "total": 99.5, "customer": "x" * 40},
        pointers=[
            ExecutionPointer(step_id=i, status=PointerStatus.COMPLETE, start_time=utcnow())
            for i in range(4)
        ],
        next_execution=utcnow(),
    )


async def _persist(url: str, options: SqliteOptions, tasks: int, per_task: int) -> float:
    async with SqlitePersistence(url, options) as persistence:
        instances = [_instance() for _ in range(tasks)]
        for instance in instances:
            await persistence.create_workflow(instance)

        async def work(instance: WorkflowInstance) -> None:
            for _ in range(per_task):
                instance.data["total"] += 1
                await persistence.persist_workflow(instance)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for instance in instances:
                tg.start_soon(work, instance)
        return tasks * per_task / (time.perf_counter() - started)


async def _queue(url: str, options: SqliteOptions, count: int) -> float:
    async with SqliteQueue(url, options) as queue:
        started = time.perf_counter()
        for index in range(count):
            await queue.enqueue(QueueName.WORKFLOW, f"item-{index}")
            message = await queue.dequeue(QueueName.WORKFLOW)
            assert message is not None
            await queue.ack(message)
        return count / (time.perf_counter() - started)


async def _lock(url: str, options: SqliteOptions, count: int) -> float:
    async with SqliteLock(url, options) as lock:
        started = time.perf_counter()
        for index in range(count):
            lease = await lock.acquire(f"key-{index % 50}", owner="bench", ttl=30)
            assert lease is not None
            await lock.release(lease)
        return count / (time.perf_counter() - started)


async def main(scale: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        modes: tuple[Literal["full", "normal"], ...] = ("full", "normal")
        for synchronous in modes:
            options = SqliteOptions(synchronous=synchronous)
            url = f"sqlite:///{Path(directory) / synchronous}.db"
            sequential = await _persist(url, options, 1, 500 * scale)
            concurrent = await _persist(url, options, 100, 20 * scale)
            queue = await _queue(url, options, 300 * scale)
            lock = await _lock(url, options, 300 * scale)
            print(
                f"synchronous={synchronous:<6} persist_workflow/s: {sequential:8.0f} sequential,"
                f" {concurrent:8.0f} with 100 tasks | enqueue+dequeue+ack/s: {queue:6.0f}"
                f" | acquire+release/s: {lock:6.0f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1, help="multiply the operation counts")
    anyio.run(main, parser.parse_args().scale)
