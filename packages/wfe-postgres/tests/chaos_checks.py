"""The chaos tests' worker processes and oracle, one copy for every chaos test that runs the
workflow of chaos_flows.py: wfe-postgres's test_chaos.py and wfe-valkey's
test_chaos_postgres.py (which loads this module by path, as it loads chaos_flows).

The oracle: every workflow completes with each step's change applied once
(:func:`check_final`); no two processes ever ran the same step attempt at overlapping times
(:func:`check_no_overlap`, from the side table ``chaos_runs``, by the database's clock); a
paused process's late writes are refused when another process took its instances over
meanwhile (:func:`check_late_writes_refused`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from chaos_flows import STEPS, ChaosData

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from wfe_host import WorkflowHost

#: The directory of chaos_flows.py, which the workers import (``wfe worker -m chaos_flows``).
HERE = Path(__file__).resolve().parent


class Worker:
    """One ``wfe worker -m chaos_flows`` process with ``settings`` (``WFE_*`` variables),
    recording its step runs in the side table of the database ``dsn`` names; its stderr in
    ``log``."""

    def __init__(self, settings: Mapping[str, str], dsn: str, log: Path, name: str) -> None:
        self.log = log
        self.name = name
        env = {
            **os.environ,
            **settings,
            "CHAOS_DSN": dsn,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        argv = [sys.executable, "-m", "wfe_host", "worker", "-m", "chaos_flows"]
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [*argv, "--worker-id", name, "--log-level", "warning"],
                cwd=HERE,
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

    def wait_ready(self, deadline: float) -> None:
        """Until the worker says it runs (by ``deadline``, on the monotonic clock)."""
        while "Stop with Ctrl+C" not in self.output():
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not start:\n{self.output()}")
            time.sleep(0.1)  # a process starting: its log is all there is to watch

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def workers(
    settings: Mapping[str, str], dsn: str, tmp_path: Path, count: int = 3
) -> Iterator[list[Worker]]:
    """``count`` started workers (see :class:`Worker`), stopped at the end."""
    started = [
        Worker(settings, dsn, tmp_path / f"worker-{n}.log", f"worker-{n}") for n in range(count)
    ]
    try:
        deadline = time.monotonic() + 60
        for worker in started:
            worker.wait_ready(deadline)
        yield started
    finally:
        for worker in started:
            worker.stop()


def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row ``query`` returns."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def db_now(url: str) -> datetime:
    """The database's clock (the side table's times are by it)."""
    value: datetime = scalar(url, "SELECT clock_timestamp()")
    return value


async def start(client: WorkflowHost, count: int) -> list[str]:
    """Start ``count`` workflows; the event of every other one is published at once (mostly
    before it waits: stored, then matched by the subscription its wait stores); the rest are
    the test's to publish (:func:`publish`)."""
    ids = []
    for index in range(count):
        ids.append(await client.start_workflow("chaos", data=ChaosData(key=f"k{index}")))
        if index % 2 == 0:
            await client.publish_event("go", key=f"k{index}", data=None)
    return ids


async def publish(client: WorkflowHost, indexes: range) -> None:
    """Publish the events of the workflows ``indexes`` names (odd ones: see :func:`start`)."""
    for index in indexes:
        await client.publish_event("go", key=f"k{index}", data=None)


async def completed(client: WorkflowHost) -> int:
    """How many workflows completed."""
    return int((await client.list_workflows(status="complete", take=1)).total)


async def check_final(client: WorkflowHost, ids: list[str]) -> None:
    for workflow_id in ids:
        instance = await client.get_workflow(workflow_id)
        assert instance.status == "complete", (workflow_id, instance.status)
        # Each step's change applied once: a transition stored twice, or a stale write over
        # a newer one, would show here.
        assert instance.data.count == len(STEPS), (workflow_id, instance.data)
        assert sorted(instance.data.log) == sorted(STEPS), (workflow_id, instance.data)


def check_no_overlap(url: str, pauses: Mapping[int, tuple[datetime, datetime]]) -> int:
    """No two processes ran the same step attempt at overlapping times (a stopped process
    runs nothing: its executions are cut at the pause, ``pauses[pid]`` = stopped,
    continued). Returns how many executions there were."""
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


def runs_of(url: str, pid: int) -> int:
    """How many step runs process ``pid`` started."""
    return int(scalar(url, "SELECT count(*) FROM chaos_runs WHERE pid = %s", (pid,)))


def check_late_writes_refused(
    url: str, paused: Worker, stopped: datetime, continued: datetime
) -> None:
    """The process ``paused`` (stopped, continued by the database's clock) had its late
    writes refused, where it had any to refuse.

    Only a step run under way across the pause, in a workflow another process ran a step of
    meanwhile (it took the instance over), has a late write to refuse: the pause may fall
    where the worker ran nothing, or end before anyone took its instances over, and a run
    whose instance nobody took over may store its work (nobody else wrote)."""
    taken_over = scalar(
        url,
        "SELECT count(*) FROM chaos_runs r WHERE r.pid = %s AND r.started_at < %s"
        " AND (r.finished_at IS NULL OR r.finished_at > %s) AND EXISTS ("
        "  SELECT 1 FROM chaos_runs o WHERE o.workflow_id = r.workflow_id"
        "  AND o.pid <> r.pid AND o.started_at > %s"
        "  AND (r.finished_at IS NULL OR o.started_at < r.finished_at))",
        (paused.pid, stopped, continued, stopped),
    )
    if taken_over:
        late = paused.output()
        refused = late.count("stale pass dropped") + late.count("lost the lease")
        assert refused > 0, f"the paused worker's late passes were not refused:\n{late}"
