"""Workflows per second on a WorkflowHost over SQLite (needs wfe-host; run with ``uv run python``).

Starts ``--count`` three-step workflows at once and waits for all of them, on a SQLite file with
``synchronous=full`` and ``normal``, and on the in-memory providers for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio
import attrs

from wfe_core import StepContext, WorkflowBuilder
from wfe_host import WorkflowHost


@attrs.define
class Counter:
    count: int = 0


def bump(ctx: StepContext) -> None:
    ctx.data.count += 1


async def run(url: str | None, count: int) -> float:
    definition = WorkflowBuilder(Counter).start_with(bump).then(bump).then(bump).build("bench")
    settings = {"persistence": url} if url else {}
    async with WorkflowHost.from_settings(settings) as host:
        host.register(definition)
        started = time.perf_counter()
        ids: list[str] = []

        async def start() -> None:
            ids.append(await host.start_workflow("bench"))

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(start)
        for workflow_id in ids:
            await host.wait_for_workflow(workflow_id, timeout=300)
        return count / (time.perf_counter() - started)


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for label, url in (
            ("sqlite synchronous=full", f"sqlite:///{Path(directory) / 'full.db'}"),
            (
                "sqlite synchronous=normal",
                f"sqlite:///{Path(directory) / 'normal.db'}?synchronous=normal",
            ),
            ("memory", None),
        ):
            rate = await run(url, count)
            print(f"{label:<26} {rate:6.0f} workflows/s ({count} workflows of 3 steps)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    anyio.run(main, parser.parse_args().count)
