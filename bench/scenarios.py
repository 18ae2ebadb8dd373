"""The scenarios of issue 6 and the runs (jobs) each is made of.

A *job* is one system (WFE, a DBOS configuration, the raw-commit floor) on one backend in
one scenario; each repetition of it is one worker process. Jobs of a *group* are run in the
same rounds, interleaved (the order rotates every round), so their figures compare as
ratios taken under the same conditions.
"""

from __future__ import annotations

from typing import Any

import attrs

#: Scenario titles, in the order of the table.
TITLES = {
    "1": "1. 3-step, sequential start-and-wait",
    "2": "2. 3-step, 200 started at once",
    "3": "3. in-memory, 100-step workflow, 1 core",
    "4": "4. event round trip",
    "5": "5. shell / Deno step overhead",
    "6": "6. as 2, with N finished instances stored",
    "7": "7. one long workflow of N steps, alone",
}

#: Scenario 7's shapes (see ``bench.peers.wfe.LONG_SHAPES``) and backends.
LONG_SHAPES = ("sequence", "while_do", "for_each", "for_each_parallel", "recur")
LONG_BACKENDS = ("memory", "sqlite", "postgres")
#: The longest ``recur`` scenario 7 runs, by backend: each of its rounds is a pass over the
#: instance's live part, holding the recur's last child ids only (docs/benchmarks.md,
#: "Partial child lists"), so a round costs the same CPU at 10,000 as at 100 everywhere;
#: but a round is a real sleep and two commits, and PostgreSQL's (fsync on) make 10,000
#: rounds take 4-7 minutes of wall time on the 2-CPU VM: it stays at 1,000.
RECUR_MAX_STEPS = {"memory": 10_000, "sqlite": 10_000, "postgres": 1_000}


def long_system(system: str, shape: str, steps: int) -> str:
    """The row label of one scenario 7 job: the system, the shape and N."""
    return f"{system} {shape} N={steps:,}"


@attrs.frozen
class Sizes:
    """Repetitions and sizes of one invocation."""

    repetitions: int = 5
    warmup_rounds: int = 1
    sequential: int = 100
    burst: int = 200
    memory_steps: int = 100
    memory_workflows: int = 20
    events: int = 30
    commands: int = 15
    floor_commits: int = 1000
    stored: int = 100_000
    #: Workflows (or events) run before the timed part inside each run.
    warmup: int = 10
    #: Scenario 7: the lengths (steps) of the one long workflow.
    long_steps: tuple[int, ...] = (100, 1_000, 10_000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            repetitions=2,
            warmup_rounds=0,
            sequential=20,
            burst=200,
            memory_workflows=5,
            events=8,
            commands=5,
            floor_commits=300,
            stored=10_000,
            warmup=3,
        )


@attrs.frozen
class Job:
    """One system on one backend in one scenario."""

    scenario: str
    system: str
    backend: str
    spec: dict[str, Any] = attrs.field(factory=dict)
    #: Why it cannot run here (a row saying so is printed instead of figures).
    skip: str | None = None
    #: Filled in per run (a fresh file or database): "sqlite-file", "postgres-db" or None.
    target_kind: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scenario, self.system, self.backend)


#: The DBOS configurations measured on SQLite: its default journal, and WAL like WFE's.
DBOS_SQLITE = (("DBOS", "default"), ("DBOS (WAL)", "wal"))


def _wfe(scenario: str, backend: str, kind: str, skip: str | None, **spec: Any) -> Job:
    target = {
        "sqlite": "sqlite-file",
        "sqlite+valkey": "sqlite-file",
        "postgres": "postgres-db",
    }.get(backend)
    return Job(
        scenario,
        "WFE",
        backend,
        {"system": "wfe", "scenario": kind, "backend": backend, **spec},
        skip,
        target,
    )


def _dbos(scenario: str, label: str, journal: str, backend: str, kind: str, **spec: Any) -> Job:
    target = "sqlite-file" if backend == "sqlite" else "postgres-db"
    return Job(
        scenario,
        label,
        backend,
        {"system": "dbos", "scenario": kind, "backend": backend, "journal": journal, **spec},
        None,
        target,
    )


def _floor(scenario: str, backend: str, commits: int, skip: str | None = None) -> Job:
    target = "sqlite-file" if backend == "sqlite" else "postgres-db"
    spec = {"system": "floor", "scenario": "floor", "backend": backend, "count": commits}
    return Job(scenario, "raw INSERT+COMMIT", backend, spec, skip, target)


def groups(
    sizes: Sizes,
    *,
    wfe_postgres_skip: str | None,
    postgres_skip: str | None,
    step_types_skip: str | None,
    only: set[str] | None = None,
    valkey_skip: str | None = "no Valkey server",
) -> list[tuple[str, list[Job]]]:
    """The groups of jobs to run, each named by the scenarios it holds."""
    warm = sizes.warmup
    pg_wfe_skip = postgres_skip or wfe_postgres_skip
    result: list[tuple[str, list[Job]]] = []

    def wanted(*scenarios: str) -> bool:
        return only is None or any(s in only for s in scenarios)

    if wanted("1"):
        count = sizes.sequential
        jobs = [_wfe("1", "sqlite", "sequential", None, count=count, warmup=warm)]
        jobs += [
            _dbos("1", label, journal, "sqlite", "sequential", count=count, warmup=warm)
            for label, journal in DBOS_SQLITE
        ]
        jobs.append(_wfe("1", "postgres", "sequential", pg_wfe_skip, count=count, warmup=warm))
        if postgres_skip is None:
            jobs.append(_dbos("1", "DBOS", "", "postgres", "sequential", count=count, warmup=warm))
        result.append(("1", jobs))
    if wanted("2", "6"):
        count = sizes.burst
        jobs = []
        if wanted("2"):
            jobs.append(_wfe("2", "sqlite", "burst", None, count=count, warmup=warm))
            # The same store with Valkey as lock, queue and lifecycle, in the same rounds.
            jobs.append(_wfe("2", "sqlite+valkey", "burst", valkey_skip, count=count, warmup=warm))
            jobs += [
                _dbos("2", label, journal, "sqlite", "burst", count=count, warmup=warm)
                for label, journal in DBOS_SQLITE
            ]
            jobs.append(_floor("2", "sqlite", sizes.floor_commits))
            jobs.append(_wfe("2", "postgres", "burst", pg_wfe_skip, count=count, warmup=warm))
            if postgres_skip is None:
                jobs.append(_dbos("2", "DBOS", "", "postgres", "burst", count=count, warmup=warm))
                jobs.append(_floor("2", "postgres", sizes.floor_commits))
        if wanted("6"):
            jobs.append(_wfe("6", "sqlite", "scale", None, count=count, warmup=warm))
            jobs.append(_wfe("6", "postgres", "scale", pg_wfe_skip, count=count, warmup=warm))
        result.append(("2+6" if wanted("2") and wanted("6") else "2" if wanted("2") else "6", jobs))
    if wanted("3"):
        jobs = [
            _wfe(
                "3",
                "memory",
                "memory",
                None,
                steps=sizes.memory_steps,
                count=sizes.memory_workflows,
                warmup=1,
            )
        ]
        # The memory store's shortcuts off (fast=False): what they are worth.
        plain = attrs.evolve(jobs[0], system="WFE, memory fast=False")
        jobs.append(attrs.evolve(plain, spec={**plain.spec, "fast": False}))
        # The host's OpenTelemetry middleware off: what it costs with the API and no SDK
        # (the default "WFE" line has it on).
        quiet = attrs.evolve(jobs[0], system="WFE, telemetry off")
        jobs.append(attrs.evolve(quiet, spec={**quiet.spec, "telemetry": False}))
        result.append(("3", jobs))
    if wanted("4"):
        count = sizes.events
        jobs = [
            _wfe("4", "memory", "event", None, count=count, warmup=warm),
            _wfe("4", "sqlite", "event", None, count=count, warmup=warm),
            _wfe("4", "sqlite+valkey", "event", valkey_skip, count=count, warmup=warm),
            _dbos("4", "DBOS (WAL)", "wal", "sqlite", "event", count=count, warmup=warm),
            _wfe("4", "postgres", "event", pg_wfe_skip, count=count, warmup=warm),
        ]
        if postgres_skip is None:
            jobs.append(_dbos("4", "DBOS", "", "postgres", "event", count=count, warmup=warm))
        result.append(("4", jobs))
    if wanted("5"):
        count = sizes.commands
        jobs = [
            Job(
                "5",
                "WFE shell step",
                "memory",
                {"system": "wfe", "scenario": "shell", "count": count, "warmup": 2},
                step_types_skip,
            ),
            Job(
                "5",
                "WFE deno step",
                "memory",
                {"system": "wfe", "scenario": "deno", "count": count, "warmup": 2},
                step_types_skip,
            ),
        ]
        result.append(("5", jobs))
    if wanted("7"):
        jobs = []
        for steps in sizes.long_steps:
            for shape in LONG_SHAPES:
                for backend in LONG_BACKENDS:
                    if shape == "recur" and steps > RECUR_MAX_STEPS[backend]:
                        continue
                    skip = pg_wfe_skip if backend == "postgres" else None
                    job = _wfe("7", backend, "long", skip, shape=shape, steps=steps, warmup=2)
                    jobs.append(attrs.evolve(job, system=long_system("WFE", shape, steps)))
            # DBOS on WAL (faster than its default journal): the stricter comparison.
            job = _dbos("7", "DBOS (WAL)", "wal", "sqlite", "loop", count=steps, warmup=2)
            jobs.append(attrs.evolve(job, system=long_system("DBOS (WAL)", "loop", steps)))
        result.append(("7", jobs))
    return result
