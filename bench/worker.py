"""One measurement in a fresh process: ``python -m bench.worker '<json spec>'``.

Every run gets its own interpreter so runs cannot disturb each other (DBOS is a process-wide
singleton; a host leaves caches and threads behind). The result is printed as the last line
of stdout, after :data:`MARKER`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback
from typing import Any

import anyio

MARKER = "BENCH-RESULT "


def _pin_to_one_cpu() -> None:
    """Run on one CPU (the one this process is on), for "steps/s on one core"."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement ``spec`` describes and return its metrics."""
    system = spec["system"]
    scenario = spec["scenario"]
    backend = spec.get("backend", "memory")
    target: str = spec.get("target") or ""
    count = int(spec.get("count", 0))
    warmup = int(spec.get("warmup", 0))
    if system == "floor":
        from bench import floor

        if backend == "sqlite":
            return floor.sqlite_floor(target, count)
        return floor.postgres_floor(target, count)
    if system == "dbos":
        from bench.peers import dbos

        result: dict[str, Any] = dbos.run(
            scenario, backend, target, spec.get("journal", "default"), count, warmup
        )
        return result
    if system == "seed":
        from bench import seed

        if backend == "postgres":
            return anyio.run(seed.seed_postgres, target, count)
        return anyio.run(seed.seed, target, count)
    if system != "wfe":
        raise ValueError(f"unknown system {system!r}")
    from bench.peers import wfe

    wfe.VALKEY_URL = spec.get("valkey_url")
    if scenario == "sequential":
        return anyio.run(wfe.sequential, backend, target, count, warmup)
    if scenario == "burst":
        return anyio.run(wfe.burst, backend, target, count, warmup)
    if scenario == "scale":
        from bench import seed

        if backend == "sqlite":
            seed.copy_store(spec["template"], target)

        async def scaled() -> dict[str, Any]:
            return await wfe.burst(backend, target, count, warmup, fresh=False)

        return anyio.run(scaled)
    if scenario == "memory":
        _pin_to_one_cpu()
        fast = bool(spec.get("fast", True))
        telemetry = bool(spec.get("telemetry", True))
        return anyio.run(wfe.memory_steps, int(spec["steps"]), count, warmup, fast, telemetry)
    if scenario == "event":
        return anyio.run(wfe.event_round_trip, backend, target, count, warmup)
    if scenario == "long":
        return anyio.run(
            wfe.long_workflow, spec["shape"], backend, target, int(spec["steps"]), warmup
        )
    if scenario in ("shell", "deno"):
        with tempfile.TemporaryDirectory(prefix="wfe-bench-") as workdir:
            return anyio.run(wfe.step_overhead, scenario, count, warmup, workdir)
    raise ValueError(f"unknown scenario {scenario!r}")


def _describe(exc: BaseException) -> str:
    """One line naming the error (the distinct leaves of an exception group)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = sorted({_describe(inner) for inner in exc.exceptions})
        return f"{len(exc.exceptions)} errors: " + "; ".join(leaves)
    return f"{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.ERROR)
    spec = json.loads(argv[1])
    try:
        result = {"ok": True, "metrics": run(spec)}
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": _describe(exc)}
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
