"""The DBOS Transact side of the scenarios it has an equivalent for (1, 2 and 4).

The same workload as WFE's: a workflow of three trivial steps (``@DBOS.step`` async
functions), started with ``DBOS.start_workflow_async`` and awaited with
``handle.get_result()``; for the event round trip, a workflow that runs one step, waits in
``DBOS.recv_async`` and runs a step that notes the time, with ``DBOS.send_async`` as the event.

DBOS is a process-wide singleton, so each run is its own worker process (as for WFE).
On SQLite, DBOS keeps its default rollback journal unless the file is created in WAL mode
first (``journal="wal"``): both are measured, since WFE's provider uses WAL. The notification
polling interval is lowered from 1 s to 10 ms (else ``recv`` on SQLite waits up to a second).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from typing import Any

from bench.stats import percentile
from bench.usage import peak_rss_mb, written_bytes

TIMEOUT = 300.0

_resumed: dict[str, float] = {}
_waiting: dict[str, asyncio.Event] = {}
_resumed_events: dict[str, asyncio.Event] = {}


def _launch(backend: str, target: str, journal: str) -> Any:
    from dbos import DBOS

    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(target + suffix):
                os.remove(target + suffix)
        if journal == "wal":
            # journal_mode=WAL is stored in the file: DBOS's connections then use it too.
            conn = sqlite3.connect(target)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.close()
        url = f"sqlite:///{target}"
    else:
        url = target
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "wfe-bench",
            "system_database_url": url,
            "run_admin_server": False,
            "log_level": "WARNING",
            # recv() on SQLite polls (no LISTEN/NOTIFY); the 1 s default would make the
            # event round trip about a second, so it is lowered (documented in the report).
            "notification_listener_polling_interval_sec": 0.01,
        }
    )

    @DBOS.step()
    async def noop(value: int) -> int:
        return value + 1

    @DBOS.workflow()
    async def three_steps(value: int) -> int:
        value = await noop(value)
        value = await noop(value)
        return await noop(value)

    @DBOS.step()
    async def mark(key: str) -> None:
        _resumed[key] = time.perf_counter()
        _resumed_events[key].set()

    @DBOS.workflow()
    async def waits(key: str) -> None:
        await noop(0)
        _waiting[key].set()
        await DBOS.recv_async("bench-go", timeout_seconds=TIMEOUT)
        await mark(key)

    @DBOS.workflow()
    async def loop(steps: int) -> int:
        value = 0
        for _ in range(steps):
            value = await noop(value)
        return value

    DBOS.launch()
    _workflows["loop"] = loop
    return DBOS, three_steps, waits


#: Workflows registered by ``_launch`` beyond the three it returns.
_workflows: dict[str, Any] = {}


async def _run(kind: str, backend: str, target: str, journal: str, count: int, warmup: int) -> Any:
    dbos, three_steps, waits = _launch(backend, target, journal)
    try:
        if kind == "sequential":
            for i in range(warmup):
                await (await dbos.start_workflow_async(three_steps, i)).get_result()
            latencies: list[float] = []
            started = time.perf_counter()
            cpu = time.process_time()
            for i in range(count):
                t0 = time.perf_counter()
                await (await dbos.start_workflow_async(three_steps, i)).get_result()
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            return {
                "workflows_per_s": count / elapsed,
                "cpu_ms_per_workflow": cpu * 1000 / count,
                "latency_p50_ms": percentile(latencies, 50) * 1000,
                "latency_p99_ms": percentile(latencies, 99) * 1000,
            }
        if kind == "burst":

            async def burst(n: int) -> tuple[float, float]:
                t0 = time.perf_counter()
                cpu = time.process_time()
                handles = await asyncio.gather(
                    *(dbos.start_workflow_async(three_steps, i) for i in range(n))
                )
                await asyncio.gather(*(h.get_result() for h in handles))
                return time.perf_counter() - t0, time.process_time() - cpu

            if warmup:
                await burst(warmup)
            elapsed, cpu = await burst(count)
            rate = count / elapsed
            return {
                "workflows_per_s": rate,
                "step_transitions_per_s": rate * 3,
                "cpu_ms_per_workflow": cpu * 1000 / count,
            }
        if kind == "event":
            latencies = []
            for i in range(warmup + count):
                key = f"k{i}"
                _waiting[key] = asyncio.Event()
                _resumed_events[key] = asyncio.Event()
                handle = await dbos.start_workflow_async(waits, key)
                await asyncio.wait_for(_waiting[key].wait(), TIMEOUT)
                # Let recv reach its wait (a message sent earlier would be found at once).
                await asyncio.sleep(0.02)
                published = time.perf_counter()
                await dbos.send_async(handle.get_workflow_id(), {"n": i}, "bench-go")
                await asyncio.wait_for(_resumed_events[key].wait(), TIMEOUT)
                if i >= warmup:
                    latencies.append(_resumed[key] - published)
                await handle.get_result()
            return {
                "latency_p50_ms": percentile(latencies, 50) * 1000,
                "latency_p99_ms": percentile(latencies, 99) * 1000,
            }
        if kind == "loop":
            # Scenario 7: one workflow calling one step ``count`` times, alone.
            loop = _workflows["loop"]
            for _ in range(warmup):
                await (await dbos.start_workflow_async(loop, 10)).get_result()
            written = written_bytes()
            started = time.perf_counter()
            cpu = time.process_time()
            await (await dbos.start_workflow_async(loop, count)).get_result()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            written = written_bytes() - written
            return {
                "steps_per_s": count / elapsed,
                "cpu_us_per_step": cpu * 1e6 / count,
                "bytes_per_step": written / count,
                "peak_rss_mb": peak_rss_mb(),
            }
        raise ValueError(f"DBOS has no {kind!r} scenario")
    finally:
        dbos.destroy(destroy_registry=True)


def run(kind: str, backend: str, target: str, journal: str, count: int, warmup: int) -> Any:
    """Run one DBOS measurement (blocking; owns the event loop)."""
    return asyncio.run(_run(kind, backend, target, journal, count, warmup))
