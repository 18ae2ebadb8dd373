"""Many hosts on one PostgreSQL under chaos: real ``wfe worker`` processes with PostgreSQL
persistence, queue and lock.

* Three workers run the workflows (parallel branches, a timer, an event each); one is
  SIGKILLed mid-run, another SIGSTOPped past its lease and then continued. Every workflow
  completes with each step's change applied once; no two processes ever ran the same step
  attempt at overlapping times; the paused process's late work is refused (it logs the stale
  pass it dropped or the lease it lost). The oracle is chaos_checks.py's.
* The server restarts mid-run: the workers reconnect and carry on, nothing is lost.

``WFE_CHAOS_WORKFLOWS`` sets the size (default 500).
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from chaos_checks import (
    check_final,
    check_late_writes_refused,
    check_no_overlap,
    completed,
    db_now,
    publish,
    runs_of,
    scalar,
    start,
    workers,
)
from chaos_flows import CREATE_RUNS, STEPS, chaos
from wfe_host import WorkflowHost
from wfe_postgres.testing import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from chaos_checks import Worker

WORKFLOWS = int(os.environ.get("WFE_CHAOS_WORKFLOWS", "500"))
#: Short leases, so a paused or killed worker's instances are taken over quickly.
LEASE_SECONDS = 2.0
#: The whole run's bound.
RUN_LIMIT = float(os.environ.get("WFE_CHAOS_LIMIT", "240"))


@pytest.fixture
def cluster() -> Iterator[PostgresServer]:
    """A server of the test's own: the restart test restarts it."""
    with PostgresServer(fast=True) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(CREATE_RUNS)
        yield server


def _persistence(url: str) -> str:
    return os.environ.get("WFE_CHAOS_PERSISTENCE") or url


def _settings(url: str) -> dict[str, str]:
    return {
        "WFE_PERSISTENCE": _persistence(url),
        "WFE_QUEUE": url,
        "WFE_LOCK": url,
        "WFE_HOST_LEASE_SECONDS": str(LEASE_SECONDS),
    }


def _client(url: str) -> WorkflowHost:
    client = WorkflowHost.from_settings(
        {
            "persistence": _persistence(url),
            "queue": url,
            "lock": url,
            "host": {"run_workers": False},
        }
    )
    client.register(chaos)
    return client


async def _wait_for_waiting(url: str, count: int, deadline: float) -> None:
    """Until ``count`` workflows have reached their wait for the event (their subscription
    is stored)."""
    while (waiting := scalar(url, "SELECT count(*) FROM wfe.subscriptions")) < count:
        assert time.monotonic() < deadline, f"only {waiting} of {count} workflows reached the wait"
        await anyio.sleep(0.2)


async def _wait_until(
    client: WorkflowHost, url: str, running: list[Worker], done: int, deadline: float
) -> None:
    while await completed(client) < done:
        if time.monotonic() > deadline:
            for worker in running:
                if worker.alive():
                    worker.process.send_signal(signal.SIGCONT)
                    worker.process.send_signal(signal.SIGUSR1)
            await anyio.sleep(2)
            stuck = await _stuck(client, url, running)
            raise AssertionError(f"the workflows did not finish in time:\n{stuck}")
        await anyio.sleep(0.2)


async def _stuck(client: WorkflowHost, url: str, running: list[Worker]) -> str:
    """What the unfinished workflows wait for, and what the queue and the locks hold."""
    lines = []
    page = await client.list_workflows(status="runnable", take=20)
    for instance in page.items:
        pointers = [
            (p.step_id, str(p.status), p.event_name, p.event_published, p.event_key)
            for p in instance.pointers
            if p.event_name
        ]
        lines.append(f"{instance.id} next={instance.next_execution} {pointers} {instance.data}")
    with psycopg.connect(url, autocommit=True) as conn:
        counts = conn.execute("SELECT status, count(*) FROM wfe.workflows GROUP BY 1").fetchall()
        lines.append(f"statuses: {counts}")
        for instance in page.items:
            rows = conn.execute(
                "SELECT id, is_processed, time, now() FROM wfe.events WHERE key = %s",
                (instance.data.key,),
            ).fetchall()
            lines += [f"  event {row}" for row in rows]
            rows = conn.execute(
                "SELECT id, terminated, subscribe_as_of FROM wfe.subscriptions"
                " WHERE workflow_id = %s",
                (instance.id,),
            ).fetchall()
            lines += [f"  subscription {row}" for row in rows]
        for table in ("wfe_queue", "wfe_locks"):
            rows = conn.execute(f"SELECT *, now() FROM wfe.{table} LIMIT 8").fetchall()
            lines += [f"{table}: {row}" for row in rows]
    for worker in running:
        lines.append(f"--- {worker.log.name} (last 3000 characters)\n{worker.output()[-3000:]}")
    return "\n".join(lines)


@pytest.mark.anyio
async def test_three_workers_one_killed_one_paused(cluster: PostgresServer, tmp_path: Path) -> None:
    url = cluster.url
    deadline = time.monotonic() + RUN_LIMIT
    async with _client(url) as client:
        with workers(_settings(url), url, tmp_path) as running:
            killed, paused, steady = running
            ids = await start(client, WORKFLOWS)
            # Killed while the parallel branches and timers run and waits are stored (maybe
            # between storing a subscription and queueing the event published before it:
            # that write marked the event unprocessed, so the recovery sweep delivers it).
            await _wait_for_waiting(url, WORKFLOWS // 4, deadline)
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait()
            # The killed worker's instances are taken over once its leases lapse.
            await publish(client, range(1, WORKFLOWS, 2))
            # Paused while those events are delivered (its passes in the middle of the last
            # step), well past its leases, so its instances are taken over meanwhile.
            stopped = db_now(url)
            paused.process.send_signal(signal.SIGSTOP)
            await anyio.sleep(LEASE_SECONDS * 3)
            continued = db_now(url)
            paused.process.send_signal(signal.SIGCONT)
            await _wait_until(client, url, running, WORKFLOWS, deadline)
            # Let the paused worker finish noticing what it lost.
            await anyio.sleep(LEASE_SECONDS)
            assert steady.alive(), steady.output()
            assert paused.alive(), paused.output()
        await check_final(client, ids)
    executions = check_no_overlap(url, {paused.pid: (stopped, continued)})
    assert executions >= WORKFLOWS * len(STEPS)
    assert runs_of(url, killed.pid) > 0, "the killed worker took part before it died"
    check_late_writes_refused(url, paused, stopped, continued)


@pytest.mark.anyio
async def test_server_restart_mid_run(cluster: PostgresServer, tmp_path: Path) -> None:
    url = cluster.url
    count = max(WORKFLOWS // 3, 30)
    deadline = time.monotonic() + RUN_LIMIT
    async with _client(url) as client:
        with workers(_settings(url), url, tmp_path) as running:
            ids = await start(client, count)
            # Mid-delivery: every connection (the pools', the listeners') is dropped.
            await _wait_until(client, url, running, count // 4, deadline)
            await anyio.to_thread.run_sync(cluster.restart)
            # Events published after the restart still reach their workflows.
            await publish(client, range(1, count, 2))
            await _wait_until(client, url, running, count, deadline)
            for worker in running:
                assert worker.alive(), worker.output()
        await check_final(client, ids)
    check_no_overlap(url, {})
