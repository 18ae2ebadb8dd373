"""The workflow of the chaos tests, run by ``wfe worker -m chaos_flows`` processes.

Every step execution is recorded in the side table ``chaos_runs`` (process id, workflow,
pointer, attempt, start and finish by the database's clock), so the test can check that no
two processes ever ran the same step attempt at overlapping times. The recording connection
comes from ``CHAOS_DSN``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from wfe_core import StepContext, WorkflowBuilder

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

__all__ = ["CREATE_RUNS", "STEPS", "ChaosData", "definitions"]

#: Each step's name; every workflow runs each exactly once when all goes well.
STEPS = ("start", "left", "left-after-timer", "right", "end")
#: How long a step body takes: long enough that a kill or pause often lands inside one.
STEP_SECONDS = 0.05

CREATE_RUNS = """
CREATE TABLE IF NOT EXISTS chaos_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pid integer NOT NULL,
    workflow_id text NOT NULL,
    pointer_id text NOT NULL,
    step text NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz
)
"""


@attrs.define
class ChaosData:
    key: str = ""
    count: int = 0
    log: list[str] = attrs.Factory(list)


_pool: AsyncConnectionPool | None = None
_opening = anyio.Lock()


async def _recorder() -> AsyncConnectionPool:
    global _pool
    if _pool is not None:
        return _pool
    async with _opening:
        # One pool: steps start concurrently, and a second pool opened meanwhile would be
        # dropped while its tasks run ("Task was destroyed but it is pending").
        if _pool is not None:
            return _pool
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            os.environ["CHAOS_DSN"],
            open=False,
            min_size=1,
            max_size=8,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
        )
        await pool.open(wait=True)
        _pool = pool
        return pool


async def _execute(query: str, params: tuple[Any, ...]) -> Any:
    # The server may be restarting under the chaos: a recording waits for it and tries again,
    # as the step's own work would (a start recorded twice by one process checks the same).
    import psycopg

    pool = await _recorder()
    for attempt in range(120):
        try:
            async with pool.connection(timeout=60) as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchone()
        except psycopg.OperationalError:
            if attempt == 119:
                raise
            await anyio.sleep(0.5)
    return None


def _step(name: str) -> Any:
    async def run(ctx: StepContext) -> None:
        row = await _execute(
            "INSERT INTO chaos_runs (pid, workflow_id, pointer_id, step, attempt, started_at)"
            " VALUES (%s, %s, %s, %s, %s, clock_timestamp()) RETURNING id",
            (os.getpid(), ctx.workflow.id, ctx.pointer.id, name, ctx.attempt),
        )
        await anyio.sleep(STEP_SECONDS)
        await _execute(
            "UPDATE chaos_runs SET finished_at = clock_timestamp() WHERE id = %s RETURNING id",
            (row[0],),
        )
        ctx.data.count += 1
        ctx.data.log.append(name)

    run.__name__ = name.replace("-", "_")
    return run


chaos = (
    WorkflowBuilder(ChaosData)
    .start_with(_step("start"))
    .parallel(
        lambda p: p.branch(
            lambda b: (
                b.start_with(_step("left"))
                .delay(lambda data: timedelta(seconds=0.5))
                .then(_step("left-after-timer"))
            )
        ).branch(lambda b: b.start_with(_step("right")))
    )
    .wait_for("go", key=lambda data: data.key)
    .then(_step("end"))
    .build("chaos", version=1)
)

definitions = [chaos]


def _dump_tasks(signum: int, frame: Any) -> None:
    """SIGUSR1: print every asyncio task's stack to stderr (the test asks when work stalls)."""
    import asyncio
    import sys

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for task in asyncio.all_tasks(loop):
        task.print_stack(limit=12, file=sys.stderr)


if os.environ.get("CHAOS_DSN"):
    import signal

    signal.signal(signal.SIGUSR1, _dump_tasks)
