"""Three ``wfe worker`` processes with Valkey as queue and lock over PostgreSQL persistence,
under chaos.

* One worker is SIGKILLed mid-run, another SIGSTOPped past its leases and then continued, and
  the Valkey server restarts (losing every key: queued items, leases) while passes run.
* Separately, the PostgreSQL server restarts mid-run.

Every workflow (parallel branches, a timer, an event each: the workflow of wfe-postgres's
chaos test, ``packages/wfe-postgres/tests/chaos_flows.py``) completes with each step's change
applied once; no two processes ever ran the same step attempt at overlapping times (the side
table ``chaos_runs``, by the database's clock); the paused process's late writes are refused.
The workers and these checks are wfe-postgres's chaos test's (``chaos_checks.py``).

Nothing here assumes where a signal or a restart lands: each disruption waits (bounded) for a
condition that puts it mid-run, and what the checks require follows from what the side table
says happened (a late write is looked for only when a step of the paused process was under
way across the pause).
"""

from __future__ import annotations

import importlib.util
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_host import WorkflowHost

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    from wfe_postgres.testing import PostgresServer
    from wfe_valkey.testing import ValkeyTestServer

#: Where chaos_flows.py (the workflow module the workers import) and chaos_checks.py live.
FLOWS_DIR = Path(__file__).resolve().parents[2] / "wfe-postgres" / "tests"
#: Short leases, so a paused or killed worker's instances are taken over quickly.
LEASE_SECONDS = 2.0
#: The hosts sweep for work the restarted Valkey lost this often.
RECOVERY_SECONDS = 1.0
#: Bounded sizes: the chaos run and the restart run.
WORKFLOWS, RESTART_WORKFLOWS = 60, 30
#: Each run's bound (seconds), well within what the CI machine needs.
RUN_LIMIT = 90.0


def _load(name: str) -> ModuleType:
    """wfe-postgres's test module ``name``, loaded by path (tests are not packages), under
    its own name: chaos_checks imports chaos_flows by it, and wfe-postgres's tests, run in
    the same process, find the same modules."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, FLOWS_DIR / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


flows = _load("chaos_flows")
checks = _load("chaos_checks")


@pytest.fixture
def cluster() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own (one test restarts it), with the side table."""
    import psycopg

    from wfe_postgres.testing import PostgresServer

    with PostgresServer(fast=True) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(flows.CREATE_RUNS)
        yield server


def _valkey(url: str) -> dict[str, Any]:
    # Retries long enough to ride out the server's restart.
    return {"url": url, "options": {"retry_timeout": 30.0}}


def _settings(pg_url: str, valkey_url: str) -> dict[str, str]:
    """The workers' settings (``WFE_*`` variables)."""
    valkey_options = json.dumps(_valkey(valkey_url)["options"])
    return {
        "WFE_PERSISTENCE": pg_url,
        "WFE_QUEUE": valkey_url,
        "WFE_QUEUE_OPTIONS": valkey_options,
        "WFE_LOCK": valkey_url,
        "WFE_LOCK_OPTIONS": valkey_options,
        "WFE_HOST_LEASE_SECONDS": str(LEASE_SECONDS),
        "WFE_HOST_RECOVERY_SECONDS": str(RECOVERY_SECONDS),
    }


def _client(pg_url: str, valkey_url: str) -> WorkflowHost:
    client = WorkflowHost.from_settings(
        {
            "persistence": pg_url,
            "queue": _valkey(valkey_url),
            "lock": _valkey(valkey_url),
            "host": {"run_workers": False, "recovery_seconds": RECOVERY_SECONDS},
        }
    )
    client.register(flows.chaos)
    return client


async def _until(what: str, condition: Any, workers: list[Any], deadline: float) -> None:
    """Wait (bounded by ``deadline``) until ``condition()``; no worker may die meanwhile
    (but the one killed on purpose)."""
    while not await condition():
        for worker in workers:
            code = worker.process.poll()
            assert code in (None, -signal.SIGKILL), f"{worker.log.name} exited:\n{worker.output()}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.log.name}\n{w.output()[-3000:]}" for w in workers)
            raise AssertionError(f"timed out waiting until {what}\n{logs}")
        await anyio.sleep(0.1)


@pytest.mark.anyio
async def test_three_workers_a_kill_a_pause_and_a_valkey_restart(
    cluster: PostgresServer, restartable: ValkeyTestServer, tmp_path: Path
) -> None:
    pg_url, valkey_url = cluster.url, restartable.url
    deadline = time.monotonic() + RUN_LIMIT
    async with _client(pg_url, valkey_url) as client:
        with checks.workers(_settings(pg_url, valkey_url), pg_url, tmp_path) as workers:
            killed, paused, steady = workers
            ids = await checks.start(client, WORKFLOWS)

            async def waiting() -> bool:
                # A quarter of the workflows wait for their event: the parallel branches and
                # timers of others are under way.
                count = checks.scalar(pg_url, "SELECT count(*) FROM wfe.subscriptions")
                return bool(count >= WORKFLOWS // 4)

            await _until("a quarter of the workflows wait", waiting, workers, deadline)
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait()
            # Paused past its leases (its instances are taken over meanwhile), while the
            # first half of the remaining events are delivered.
            await checks.publish(client, range(1, WORKFLOWS // 2, 2))
            stopped = checks.db_now(pg_url)
            paused.process.send_signal(signal.SIGSTOP)
            await anyio.sleep(LEASE_SECONDS * 2.5)
            continued = checks.db_now(pg_url)
            paused.process.send_signal(signal.SIGCONT)
            # Valkey restarts (losing the queued items and the leases) right after the last
            # events are published, while their deliveries and passes are under way.
            await checks.publish(client, range(WORKFLOWS // 2 + 1, WORKFLOWS, 2))
            await anyio.to_thread.run_sync(restartable.restart)

            async def all_done() -> bool:
                return bool(await checks.completed(client) >= WORKFLOWS)

            await _until("every workflow completed", all_done, workers, deadline)
            # Let the paused worker finish noticing what it lost.
            await anyio.sleep(LEASE_SECONDS)
            assert steady.alive(), steady.output()
            assert paused.alive(), paused.output()
        await checks.check_final(client, ids)
    executions = checks.check_no_overlap(pg_url, {paused.pid: (stopped, continued)})
    assert executions >= WORKFLOWS * len(flows.STEPS)
    assert checks.runs_of(pg_url, killed.pid), "the killed worker took part before it died"
    checks.check_late_writes_refused(pg_url, paused, stopped, continued)


@pytest.mark.anyio
async def test_three_workers_carry_on_across_a_postgres_restart(
    cluster: PostgresServer, restartable: ValkeyTestServer, tmp_path: Path
) -> None:
    pg_url, valkey_url = cluster.url, restartable.url
    count = RESTART_WORKFLOWS
    deadline = time.monotonic() + RUN_LIMIT
    async with _client(pg_url, valkey_url) as client:
        with checks.workers(_settings(pg_url, valkey_url), pg_url, tmp_path) as workers:
            ids = await checks.start(client, count)

            async def some_done() -> bool:
                return bool(await checks.completed(client) >= count // 4)

            await _until("a quarter of the workflows completed", some_done, workers, deadline)
            # The odd workflows wait for events not published yet: mid-run by construction.
            await anyio.to_thread.run_sync(cluster.restart)
            await checks.publish(client, range(1, count, 2))

            async def all_done() -> bool:
                return bool(await checks.completed(client) >= count)

            await _until("every workflow completed", all_done, workers, deadline)
            for worker in workers:
                assert worker.alive(), worker.output()
        await checks.check_final(client, ids)
    assert checks.check_no_overlap(pg_url, {}) >= count * len(flows.STEPS)
