"""Profile one scenario's WFE run: ``python -m bench.profile 2 [--backend postgres] [--py-spy]``
(scenario 7: ``python -m bench.profile 7 --shape while_do --steps 10000``).

pyinstrument (default) samples the event-loop thread and writes a call tree and a flat list
of the functions with the most own time (``--flat``); ``--py-spy`` instead records every
thread (the SQLite provider works in worker threads) with py-spy, as a speedscope-less plain
"top" listing. Output goes to ``bench/results/profile-<scenario>-<backend>.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import backends
from bench.scenarios import LONG_SHAPES, Sizes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

_KIND = {
    "1": "sequential",
    "2": "burst",
    "3": "memory",
    "4": "event",
    "6": "scale",
    "7": "long",
}


def spec_for(
    scenario: str,
    backend: str,
    workdir: Path,
    sizes: Sizes,
    *,
    shape: str = "while_do",
    steps: int = 10_000,
) -> dict[str, Any]:
    kind = _KIND[scenario]
    if kind == "long":
        return {
            "system": "wfe",
            "scenario": kind,
            "backend": backend,
            "target": str(workdir / "profile.db"),
            "shape": shape,
            "steps": steps,
            "warmup": 2,
        }
    count = {
        "sequential": sizes.sequential,
        "burst": sizes.burst,
        "memory": sizes.memory_workflows,
        "event": sizes.events,
        "scale": sizes.burst,
    }[kind]
    spec: dict[str, Any] = {
        "system": "wfe",
        "scenario": kind,
        "backend": "memory" if kind == "memory" else backend,
        "target": str(workdir / "profile.db"),
        "count": count,
        "warmup": sizes.warmup,
        "steps": sizes.memory_steps,
    }
    if kind == "scale":
        spec["template"] = str(workdir / "seeded.db")
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=sorted(_KIND))
    parser.add_argument("--backend", choices=("memory", "sqlite", "postgres"), default="sqlite")
    parser.add_argument("--py-spy", action="store_true", help="py-spy over every thread")
    parser.add_argument("--stored", type=int, default=100_000, help="scenario 6's store size")
    parser.add_argument("--shape", choices=LONG_SHAPES, default="while_do", help="scenario 7's")
    parser.add_argument("--steps", type=int, default=10_000, help="scenario 7's length")
    args = parser.parse_args(argv)
    import tempfile

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{args.scenario}-{args.backend}{'-pyspy' if args.py_spy else ''}.txt"
    if args.backend == "postgres" and args.scenario == "6":
        parser.error("scenario 6 is profiled on sqlite only (its seeded store is a file)")
    with tempfile.TemporaryDirectory(prefix="wfe-profile-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        spec = spec_for(
            args.scenario, args.backend, workdir, Sizes(), shape=args.shape, steps=args.steps
        )
        if spec["backend"] == "postgres":
            # The bench's own server (fsync on), a fresh database for the run.
            pg = stack.enter_context(backends.postgres(workdir))
            if isinstance(pg, str):
                parser.exit(1, f"python -m bench.profile: {pg}\n")
            spec["target"] = pg.database_url("bench_profile")
        if args.scenario == "6":
            from bench.worker import run

            run(
                {
                    "system": "seed",
                    "scenario": "seed",
                    "target": spec["template"],
                    "count": args.stored,
                }
            )
        if args.py_spy:
            subprocess.run(
                [
                    "py-spy",
                    "record",
                    "--threads",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "-o",
                    str(out.with_suffix(".folded")),
                    "--",
                    sys.executable,
                    "-m",
                    "bench.worker",
                    json.dumps(spec),
                ],
                cwd=ROOT,
                check=True,
            )
            _top_of_folded(out.with_suffix(".folded"), out)
        else:
            from pyinstrument import Profiler
            from pyinstrument.renderers import ConsoleRenderer

            from bench.worker import run

            profiler = Profiler(async_mode="disabled", interval=0.0005)
            profiler.start()
            metrics = run(spec)
            profiler.stop()
            tree = profiler.output(ConsoleRenderer(show_all=False, time="percent_of_total"))
            flat = profiler.output(ConsoleRenderer(flat=True, time="percent_of_total"))
            out.write_text(
                f"{json.dumps(metrics)}\n\n== flat (own time) ==\n{flat}\n== tree ==\n{tree}"
            )
            print(json.dumps(metrics))
            print("\n".join(flat.splitlines()[:40]))
    print(f"written: {out}", file=sys.stderr)
    return 0


def _top_of_folded(folded: Path, out: Path, top: int = 40) -> None:
    """Own and total sample shares per function from py-spy's folded stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    lines = [f"{samples} samples", "", "== own time =="]
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / samples:6.1f}%  {frame}")
    lines += ["", "== total time =="]
    for frame, count in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / samples:6.1f}%  {frame}")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: top + 3]))


if __name__ == "__main__":
    sys.exit(main())
