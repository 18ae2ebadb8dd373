"""Three ``wfe worker`` processes with Valkey as queue and lock over PostgreSQL persistence,
under chaos.

* One worker is SIGKILLed mid-run, another SIGSTOPped past its leases and then continued, and
  the Valkey server restarts (losing every key: queued items, leases) while passes run.
* Separately, the PostgreSQL server restarts mid-run.

Every workflow (parallel branches, a timer, an event each: the workflow of wfe-postgres's
chaos test, ``packages/wfe-postgres/tests/chaos_flows.py``) completes with each step's change
applied once; no two processes ever ran the same step attempt at overlapping times (the side
table ``chaos_runs``, by the database's clock); the paused process's late writes are refused.

Nothing here assumes where a signal or a restart lands: each disruption waits (bounded) for a
condition that puts it mid-run, and what the checks require follows from what the side table
says happened (a late write is looked for only when a step of the paused process was under
way across the pause).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
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

#: The workflow module the workers import (``wfe worker -m chaos_flows``).
FLOWS_DIR = Path(__file__).resolve().parents[2] / "wfe-postgres" / "tests"
#: Short leases, so a paused or killed worker's instances are taken over quickly.
LEASE_SECONDS = 2.0
#: The hosts sweep for work the restarted Valkey lost this often.
RECOVERY_SECONDS = 1.0
#: Bounded sizes: the chaos run and the restart run.
WORKFLOWS, RESTART_WORKFLOWS = 60, 30
#: Each run's bound (seconds), well within what the CI machine needs.
RUN_LIMIT = 90.0


@pytest.fixture(scope="module")
def flows() -> ModuleType:
    """wfe-postgres's chaos workflow module, loaded by path (tests are not packages)."""
    module = sys.modules.get("chaos_flows")
    if module is None:
        spec = importlib.util.spec_from_file_location("chaos_flows", FLOWS_DIR / "chaos_flows.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["chaos_flows"] = module
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def cluster(flows: ModuleType) -> Iterator[PostgresServer]:
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


class Worker:
    """One ``wfe worker -m chaos_flows`` process, its stderr in a file."""

    def __init__(self, pg_url: str, valkey_url: str, log: Path, name: str) -> None:
        self.log = log
        valkey_options = json.dumps(_valkey(valkey_url)["options"])
        env = {
            **os.environ,
            "WFE_PERSISTENCE": pg_url,
            "WFE_QUEUE": valkey_url,
            "WFE_QUEUE_OPTIONS": valkey_options,
            "WFE_LOCK": valkey_url,
            "WFE_LOCK_OPTIONS": valkey_options,
            "WFE_HOST_LEASE_SECONDS": str(LEASE_SECONDS),
            "WFE_HOST_RECOVERY_SECONDS": str(RECOVERY_SECONDS),
            "CHAOS_DSN": pg_url,
            "PYTHONPATH": os.pathsep.join([str(FLOWS_DIR), os.environ.get("PYTHONPATH", "")]),
        }
        argv = [sys.executable, "-m", "wfe_host", "worker", "-m", "chaos_flows"]
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [*argv, "--worker-id", name, "--log-level", "warning"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def _workers(pg_url: str, valkey_url: str, tmp_path: Path) -> Iterator[list[Worker]]:
    workers = [
        Worker(pg_url, valkey_url, tmp_path / f"worker-{n}.log", f"worker-{n}") for n in range(3)
    ]
    try:
        deadline = time.monotonic() + 60
        for worker in workers:
            # A process starting: its log is all there is to watch.
            while "Stop with Ctrl+C" not in worker.output():
                assert worker.alive(), worker.output()
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.1)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def _client(pg_url: str, valkey_url: str, flows: ModuleType) -> WorkflowHost:
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


def _scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


async def _until(what: str, condition: Any, workers: list[Worker], deadline: float) -> None:
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


async def _start(client: WorkflowHost, flows: ModuleType, count: int) -> list[str]:
    """Start ``count`` workflows; the event of every other one is published at once (mostly
    before it waits: stored, then matched by the subscription its wait stores)."""
    ids = []
    for index in range(count):
        ids.append(await client.start_workflow("chaos", data=flows.ChaosData(key=f"k{index}")))
        if index % 2 == 0:
            await client.publish_event("go", key=f"k{index}", data=None)
    return ids


async def _completed(client: WorkflowHost) -> int:
    return int((await client.list_workflows(status="complete", take=1)).total)


async def _check_final(client: WorkflowHost, flows: ModuleType, ids: list[str]) -> None:
    for workflow_id in ids:
        instance = await client.get_workflow(workflow_id)
        assert instance.status == "complete", (workflow_id, instance.status)
        # Each step's change applied once: a transition stored twice, or a stale write over
        # a newer one, would show here.
        assert instance.data.count == len(flows.STEPS), (workflow_id, instance.data)
        assert sorted(instance.data.log) == sorted(flows.STEPS), (workflow_id, instance.data)


def _check_no_overlap(url: str, pauses: dict[int, tuple[datetime, datetime]]) -> int:
    """No two processes ran the same step attempt at overlapping times (a stopped process
    runs nothing: its executions are cut at the pause). Returns how many executions there
    were."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, workflow_id, pointer_id, attempt, started_at, finished_at FROM chaos_runs"
        ).fetchall()
    spans: defaultdict[tuple[str, str, int], list[tuple[datetime, datetime, int]]]
    spans = defaultdict(list)
    for pid, workflow_id, pointer_id, attempt, started, finished in rows:
        # Unfinished: the process was killed (or its pass cancelled) inside the step.
        end = finished if finished is not None else datetime.max.replace(tzinfo=started.tzinfo)
        pieces = [(started, end)]
        if pid in pauses:
            stopped, continued = pauses[pid]
            pieces = [
                (max(started, b0), min(end, b1))
                for b0, b1 in ((started, stopped), (continued, end))
                if max(started, b0) < min(end, b1)
            ] or [(started, started)]
        for a, b in pieces:
            spans[(workflow_id, pointer_id, attempt)].append((a, b, pid))
    for key, runs in spans.items():
        runs.sort()
        for (a1, b1, p1), (a2, _, p2) in itertools.pairwise(runs):
            if p1 != p2:
                assert a2 >= b1, f"{key}: process {p1} ran {a1}..{b1}, process {p2} from {a2}"
    return len(rows)


@pytest.mark.anyio
async def test_three_workers_a_kill_a_pause_and_a_valkey_restart(
    cluster: PostgresServer, restartable: ValkeyTestServer, flows: ModuleType, tmp_path: Path
) -> None:
    pg_url, valkey_url = cluster.url, restartable.url
    deadline = time.monotonic() + RUN_LIMIT
    client = _client(pg_url, valkey_url, flows)
    async with client:
        with _workers(pg_url, valkey_url, tmp_path) as workers:
            killed, paused, steady = workers
            ids = await _start(client, flows, WORKFLOWS)

            async def waiting() -> bool:
                # A quarter of the workflows wait for their event: the parallel branches and
                # timers of others are under way.
                count = _scalar(pg_url, "SELECT count(*) FROM wfe.subscriptions")
                return bool(count >= WORKFLOWS // 4)

            await _until("a quarter of the workflows wait", waiting, workers, deadline)
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait()
            # Paused past its leases (its instances are taken over meanwhile), while the
            # first half of the remaining events are delivered.
            for index in range(1, WORKFLOWS // 2, 2):
                await client.publish_event("go", key=f"k{index}", data=None)
            stopped = _scalar(pg_url, "SELECT clock_timestamp()")
            paused.process.send_signal(signal.SIGSTOP)
            await anyio.sleep(LEASE_SECONDS * 2.5)
            continued = _scalar(pg_url, "SELECT clock_timestamp()")
            paused.process.send_signal(signal.SIGCONT)
            # Valkey restarts (losing the queued items and the leases) right after the last
            # events are published, while their deliveries and passes are under way.
            for index in range(WORKFLOWS // 2 + 1, WORKFLOWS, 2):
                await client.publish_event("go", key=f"k{index}", data=None)
            await anyio.to_thread.run_sync(restartable.restart)

            async def all_done() -> bool:
                return await _completed(client) >= WORKFLOWS

            await _until("every workflow completed", all_done, workers, deadline)
            # Let the paused worker finish noticing what it lost.
            await anyio.sleep(LEASE_SECONDS)
            assert steady.alive(), steady.output()
            assert paused.alive(), paused.output()
        await _check_final(client, flows, ids)
    executions = _check_no_overlap(pg_url, {paused.pid: (stopped, continued)})
    assert executions >= WORKFLOWS * len(flows.STEPS)
    assert _scalar(pg_url, "SELECT count(*) FROM chaos_runs WHERE pid = %s", (killed.pid,)), (
        "the killed worker took part before it died"
    )
    late = paused.output()
    refused = late.count("stale pass dropped") + late.count("lost the lease")
    # Step runs of the paused process under way across the pause, in a workflow another
    # process ran a step of meanwhile (it took the instance over): only their passes have a
    # late write to refuse (nobody else wrote the others).
    taken_over = _scalar(
        pg_url,
        "SELECT count(*) FROM chaos_runs r WHERE r.pid = %s AND r.started_at < %s"
        " AND (r.finished_at IS NULL OR r.finished_at > %s) AND EXISTS ("
        "  SELECT 1 FROM chaos_runs o WHERE o.workflow_id = r.workflow_id"
        "  AND o.pid <> r.pid AND o.started_at > %s"
        "  AND (r.finished_at IS NULL OR o.started_at < r.finished_at))",
        (paused.pid, stopped, continued, stopped),
    )
    if taken_over:
        assert refused > 0, f"the paused worker's late passes were not refused:\n{late}"


@pytest.mark.anyio
async def test_three_workers_carry_on_across_a_postgres_restart(
    cluster: PostgresServer, restartable: ValkeyTestServer, flows: ModuleType, tmp_path: Path
) -> None:
    pg_url, valkey_url = cluster.url, restartable.url
    count = RESTART_WORKFLOWS
    deadline = time.monotonic() + RUN_LIMIT
    client = _client(pg_url, valkey_url, flows)
    async with client:
        with _workers(pg_url, valkey_url, tmp_path) as workers:
            ids = await _start(client, flows, count)

            async def some_done() -> bool:
                return await _completed(client) >= count // 4

            await _until("a quarter of the workflows completed", some_done, workers, deadline)
            # The odd workflows wait for events not published yet: mid-run by construction.
            await anyio.to_thread.run_sync(cluster.restart)
            for index in range(1, count, 2):
                await client.publish_event("go", key=f"k{index}", data=None)

            async def all_done() -> bool:
                return await _completed(client) >= count

            await _until("every workflow completed", all_done, workers, deadline)
            for worker in workers:
                assert worker.alive(), worker.output()
        await _check_final(client, flows, ids)
    assert _check_no_overlap(pg_url, {}) >= count * len(flows.STEPS)
