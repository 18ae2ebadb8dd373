"""The results as a table (printed), as JSON, and as an optional PNG chart; target checks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs

from bench.scenarios import LONG_BACKENDS, LONG_SHAPES, RECUR_MAX_STEPS, TITLES, long_system
from bench.stats import Summary

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from pathlib import Path

    from bench.scenarios import Job

_METRICS = {
    "workflows_per_s": "workflows/s",
    "step_transitions_per_s": "step transitions/s",
    "latency_p50_ms": "latency p50 ms",
    "latency_p99_ms": "latency p99 ms",
    "steps_per_s": "steps/s",
    "commits_per_s": "commits/s",
    "cpu_ms_per_workflow": "CPU ms / workflow",
    "cpu_us_per_step": "CPU us / step",
    "direct_ms": "direct run ms (p50)",
    "workflow_ms": "as a workflow ms (p50)",
    "overhead_ms": "overhead ms",
    "ratio": "workflow / direct",
    "bytes_per_step": "bytes written / step",
    "peak_rss_mb": "peak RSS MiB",
}

Values = dict[tuple[str, str, str], dict[str, list[float]]]
Rounds = dict[tuple[str, str, str], list[int]]


def metric_label(name: str) -> str:
    return _METRICS.get(name, name)


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@attrs.frozen
class Target:
    """One target of issue 6, checked against this run's medians."""

    name: str
    wanted: str
    measured: str
    met: bool | None  # None: could not be measured here

    @property
    def verdict(self) -> str:
        return {True: "MET", False: "MISSED", None: "n/a"}[self.met]


def _median(summaries: Mapping[tuple[str, str, str, str], Summary], *key: str) -> float | None:
    scenario, system, backend, metric = key
    summary = summaries.get((scenario, system, backend, metric))
    if summary is None or summary.n == 0:
        return None
    return summary.median


def paired_ratio(
    values: Values, rounds: Rounds, a: tuple[str, str, str, str], b: tuple[str, str, str, str]
) -> float | None:
    """The median over rounds of ``a / b`` measured in the same round (same conditions)."""
    by_round_a = dict(zip(rounds.get(a[:3], []), values.get(a[:3], {}).get(a[3], []), strict=False))
    by_round_b = dict(zip(rounds.get(b[:3], []), values.get(b[:3], {}).get(b[3], []), strict=False))
    ratios = [by_round_a[r] / by_round_b[r] for r in by_round_a if by_round_b.get(r)]
    return Summary.of(ratios).median if ratios else None


def targets(
    summaries: Mapping[tuple[str, str, str, str], Summary],
    skipped: Mapping[tuple[str, ...], str],
    values: Values | None = None,
    rounds: Rounds | None = None,
) -> list[Target]:
    """Check every target of issue 6 that this run measured (on ratios of medians; the
    median of same-round ratios is shown beside them, as a check against drifting load)."""
    found: list[Target] = []

    def med(*key: str) -> float | None:
        return _median(summaries, *key)

    def paired(a: tuple[str, str, str, str], b: tuple[str, str, str, str]) -> str:
        ratio = paired_ratio(values or {}, rounds or {}, a, b)
        return "" if ratio is None else f"; same-round ratio {ratio:.2f}x"

    for backend, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        wfe = med("2", "WFE", backend, "workflows_per_s")
        reason = skipped.get(("2", "WFE", backend))
        peers = (
            (("DBOS", "default journal"), ("DBOS (WAL)", "WAL"))
            if backend == "sqlite"
            else (("DBOS", ""),)
        )
        for peer, note in peers:
            dbos = med("2", peer, backend, "workflows_per_s")
            name = f"2 {label}: WFE workflows/s >= 10x {peer}"
            if wfe is None or dbos is None:
                found.append(Target(name, ">= 10x", reason or "not measured", None))
            else:
                ratio = wfe / dbos
                text = f"{ratio:.2f}x ({_num(wfe)} vs {_num(dbos)}{', ' + note if note else ''}"
                text += paired(
                    ("2", "WFE", backend, "workflows_per_s"),
                    ("2", peer, backend, "workflows_per_s"),
                )
                text += ")"
                found.append(Target(name, ">= 10x", text, ratio >= 10))
        steps = med("2", "WFE", backend, "step_transitions_per_s")
        floor = med("2", "raw INSERT+COMMIT", backend, "commits_per_s")
        name = f"2 {label}: durable step transitions/s >= 0.5x raw commits/s"
        if steps is None or floor is None:
            found.append(Target(name, ">= 0.5x", reason or "not measured", None))
        else:
            ratio = steps / floor
            text = f"{ratio:.2f}x ({_num(steps)} vs {_num(floor)}"
            text += paired(
                ("2", "WFE", backend, "step_transitions_per_s"),
                ("2", "raw INSERT+COMMIT", backend, "commits_per_s"),
            )
            text += ")"
            found.append(Target(name, ">= 0.5x", text, ratio >= 0.5))
    rate = med("3", "WFE", "memory", "steps_per_s")
    found.append(
        Target(
            "3 in-memory: steps/s on one core",
            ">= 20,000",
            "not measured" if rate is None else _num(rate),
            None if rate is None else rate >= 20_000,
        )
    )
    on_key = ("3", "WFE", "memory", "cpu_us_per_step")
    off_key = ("3", "WFE, telemetry off", "memory", "cpu_us_per_step")
    on, off = med(*on_key), med(*off_key)
    name = "3 in-memory: CPU/step, telemetry on (API, no SDK) vs off"
    if on is None or off is None:
        found.append(Target(name, "<= 1.10x", "not measured", None))
    else:
        # Judged on the same-round ratio: the two run back to back in each round, so it
        # cancels the load drifting between rounds (the medians are shown beside it).
        same_round = paired_ratio(values or {}, rounds or {}, on_key, off_key)
        ratio = same_round if same_round is not None else on / off
        text = f"{ratio:.2f}x (medians {on:.1f} vs {off:.1f} us, {on / off:.2f}x)"
        found.append(Target(name, "<= 1.10x", text, ratio <= 1.10))
    for backend in ("memory", "sqlite", "sqlite+valkey", "postgres"):
        p50 = med("4", "WFE", backend, "latency_p50_ms")
        reason = skipped.get(("4", "WFE", backend))
        found.append(
            Target(
                f"4 {backend}: event round trip p50",
                "< 5 ms",
                (reason or "not measured") if p50 is None else f"{p50:.2f} ms",
                None if p50 is None else p50 < 5,
            )
        )
    shell = med("5", "WFE shell step", "memory", "overhead_ms")
    deno = med("5", "WFE deno step", "memory", "ratio")
    reason5 = skipped.get(("5", "WFE shell step", "memory"))
    found.append(
        Target(
            "5 shell step overhead",
            "< 5 ms",
            (reason5 or "not measured") if shell is None else f"{shell:.2f} ms",
            None if shell is None else shell < 5,
        )
    )
    found.append(
        Target(
            "5 Deno step vs bare deno run",
            "< 1.5x",
            (reason5 or "not measured") if deno is None else f"{deno:.2f}x",
            None if deno is None else deno < 1.5,
        )
    )
    scaled = med("6", "WFE", "sqlite", "workflows_per_s")
    base = med("2", "WFE", "sqlite", "workflows_per_s")
    if scaled is None or base is None:
        found.append(Target("6 SQLite: scenario 6 vs 2", ">= 0.8x", "not measured", None))
    else:
        ratio = scaled / base
        text = f"{ratio:.2f}x ({_num(scaled)} vs {_num(base)} workflows/s"
        text += paired(
            ("6", "WFE", "sqlite", "workflows_per_s"), ("2", "WFE", "sqlite", "workflows_per_s")
        )
        cpu6 = med("6", "WFE", "sqlite", "cpu_ms_per_workflow")
        cpu2 = med("2", "WFE", "sqlite", "cpu_ms_per_workflow")
        if cpu6 and cpu2:
            text += f"; CPU per workflow {cpu6 / cpu2:.2f}x"
        text += ")"
        found.append(Target("6 SQLite: scenario 6 vs 2", ">= 0.8x", text, ratio >= 0.8))
    p50 = med("1", "WFE", "sqlite", "latency_p50_ms")
    found.append(
        Target(
            "1 SQLite: start-and-wait p50 (issue 13)",
            "<= 2 ms",
            "not measured" if p50 is None else f"{p50:.2f} ms",
            None if p50 is None else p50 <= 2,
        )
    )
    found += _long_targets(med)
    return found


def _long_targets(med: Any) -> list[Target]:
    """Scenario 7's targets (issue 13), on the shortest and the longest N measured."""
    found: list[Target] = []
    short, long = LONG_STEPS_CHECKED
    for shape in LONG_SHAPES:
        for backend in LONG_BACKENDS:
            # A recur runs to RECUR_MAX_STEPS rounds at most: its growth is judged there.
            longest = min(long, RECUR_MAX_STEPS[backend]) if shape == "recur" else long
            a = med("7", long_system("WFE", shape, short), backend, "cpu_us_per_step")
            b = med("7", long_system("WFE", shape, longest), backend, "cpu_us_per_step")
            name = f"7 {backend} {shape}: CPU/step N={longest:,} vs N={short:,}"
            if a is None or b is None:
                found.append(Target(name, "<= 1.5x", "not measured", None))
                continue
            ratio = b / a
            text = f"{ratio:.2f}x ({_num(b)} vs {_num(a)} us)"
            found.append(Target(name, "<= 1.5x", text, ratio <= 1.5))
    wfe = med("7", long_system("WFE", "while_do", long), "sqlite", "steps_per_s")
    dbos = med("7", long_system("DBOS (WAL)", "loop", long), "sqlite", "steps_per_s")
    name = f"7 SQLite while_do N={long:,}: steps/s vs DBOS (WAL)"
    if wfe is None or dbos is None:
        found.append(Target(name, ">= 5x", "not measured", None))
    else:
        ratio = wfe / dbos
        found.append(
            Target(name, ">= 5x", f"{ratio:.2f}x ({_num(wfe)} vs {_num(dbos)})", ratio >= 5)
        )
    for backend in LONG_BACKENDS:
        rss = med("7", long_system("WFE", "for_each_parallel", long), backend, "peak_rss_mb")
        name = f"7 {backend} parallel for_each N={long:,}: peak RSS"
        found.append(
            Target(
                name,
                "< 300 MiB",
                "not measured" if rss is None else f"{rss:.0f} MiB",
                None if rss is None else rss < 300,
            )
        )
    return found


#: The lengths scenario 7's growth targets compare (issue 13).
LONG_STEPS_CHECKED = (100, 10_000)


def build(
    *,
    started_at: datetime,
    machine: dict[str, Any],
    settings: dict[str, Any],
    plan: list[tuple[str, list[Job]]],
    values: Values,
    rounds: Rounds,
    notes: Mapping[tuple[str, str, str], set[str]],
    errors: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document of the run, its ``table`` included."""
    summaries: dict[tuple[str, str, str, str], Summary] = {}
    rows: list[dict[str, Any]] = []
    jobs = [job for _, group in plan for job in group]
    jobs.sort(key=lambda job: job.scenario)
    skip_reasons = {tuple(s["job"]): s["reason"] for s in skipped}
    for job in jobs:
        metrics = values.get(job.key, {})
        if job.skip is not None or not metrics:
            rows.append(
                {
                    "scenario": job.scenario,
                    "system": job.system,
                    "backend": job.backend,
                    "metric": None,
                    "skipped": job.skip or "no successful run",
                }
            )
            continue
        for metric, series in metrics.items():
            summary = Summary.of(series)
            summaries[(job.scenario, job.system, job.backend, metric)] = summary
            rows.append(
                {
                    "scenario": job.scenario,
                    "system": job.system,
                    "backend": job.backend,
                    "metric": metric,
                    **summary.to_json(),
                    "values": series,
                    "rounds": rounds.get(job.key, []),
                    "notes": sorted(notes.get(job.key, ())),
                }
            )
    checked = targets(summaries, skip_reasons, values, rounds)
    document: dict[str, Any] = {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "results": rows,
        "targets": [attrs.asdict(t) | {"verdict": t.verdict} for t in checked],
        "errors": errors,
    }
    document["table"] = render(document, checked)
    return document


def render(document: dict[str, Any], checked: list[Target]) -> str:
    """The plain-text table printed at the end of a run."""
    m = document["machine"]
    s = document["settings"]
    sizes = s["sizes"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        f"WFE benchmarks, {document['date']} ({s['mode']} run, {sizes['repetitions']} timed "
        f"rounds after {sizes['warmup_rounds']} warm-up round(s); median [min - max] of rounds)",
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['platform']}",
        f"python {m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {m['postgres']}" if m.get("postgres") else "")
        + f"; git {m['git']}; load average {m['load_average_start']} -> "
        f"{m.get('load_average_end')}; wall {m.get('wall_seconds')} s",
        f"versions: {versions}",
        f"sizes: {', '.join(f'{k}={v}' for k, v in sizes.items())}",
        "",
    ]
    header = f"{'scenario':<42} {'system':<32} {'backend':<13} {'metric':<23} " + (
        f"{'median':>9} {'min':>9} {'max':>9}"
    )
    lines += [header, "-" * len(header)]
    last = None
    for row in document["results"]:
        title = TITLES.get(row["scenario"], row["scenario"])
        shown = title if title != last else ""
        last = title
        if row["metric"] is None:
            skipped = row["skipped"]
            lines.append(f"{shown:<42} {row['system']:<32} {row['backend']:<13} -- {skipped}")
            continue
        lines.append(
            f"{shown:<42} {row['system']:<32} {row['backend']:<13} "
            f"{metric_label(row['metric']):<23} "
            f"{_num(_nan(row['median'])):>9} {_num(_nan(row['min'])):>9} "
            f"{_num(_nan(row['max'])):>9}"
        )
    lines += ["", "targets (ratios of this run's medians):"]
    for target in checked:
        lines.append(
            f"  {target.verdict:<6} {target.name:<58} want {target.wanted:<8} got {target.measured}"
        )
    if document["errors"]:
        lines += ["", "errors:"]
        lines += [f"  {e['job']}: {e['error']}" for e in document["errors"]]
    return "\n".join(lines)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def plot(document: dict[str, Any], path: Path) -> Path:
    """A bar chart of the throughput scenarios (median, min-max whiskers), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("1", "workflows_per_s", "1. sequential start-and-wait (workflows/s)"),
        ("2", "workflows_per_s", "2. 200 at once (workflows/s)"),
        ("4", "latency_p50_ms", "4. event round trip p50 (ms, lower is better)"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels) + 0.6))
    for axis, (scenario, metric, title) in zip(axes, panels, strict=True):
        rows = [
            r
            for r in document["results"]
            if r["scenario"] == scenario and r["metric"] == metric and r["median"] is not None
        ]
        if scenario == "2":
            rows += [
                r
                for r in document["results"]
                if r["scenario"] == "6" and r["metric"] == metric and r["median"] is not None
            ]
        labels = [
            f"{r['system']} / {r['backend']}" + (" (6: N stored)" if r["scenario"] == "6" else "")
            for r in rows
        ]
        medians = [r["median"] for r in rows]
        low = [r["median"] - r["min"] for r in rows]
        high = [r["max"] - r["median"] for r in rows]
        axis.barh(labels, medians, xerr=[low, high], color="#4c72b0", capsize=3)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10)
        axis.tick_params(labelsize=8)
        for y, (value, row) in enumerate(zip(medians, rows, strict=True)):
            axis.text(row["max"], y, f"  {_num(value)}", va="center", fontsize=8)
        axis.margins(x=0.12)
    fig.suptitle(
        f"WFE benchmarks {document['date'][:10]} ({document['machine']['cpu']})", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RESULTS.json [--plot OUT.png]``: print a saved run's table
    again (and draw its chart)."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    print(document["table"])
    if args.plot is not None:
        print(f"plot: {plot(document, args.plot)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
