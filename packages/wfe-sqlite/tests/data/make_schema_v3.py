"""Makes ``schema-v3.db``: a file written by wfe-sqlite at schema version 3 (instances stored
as one JSON document each), for ``test_migrations``. Kept to show how the file was made; run
it only with a wfe-sqlite of that version (before issue 13's schema version 4):

    cd packages/wfe-sqlite/tests/data && python make_schema_v3.py schema-v3.db

The workflows run :func:`loop_definition` (``test_migrations`` registers it too): one
finished, and one waiting for an event in the fourth round of a ``while_do`` (which also ran
a parallel ``for_each``), so the migrated file must resume it.
"""

from __future__ import annotations

import sqlite3
import sys

import anyio

from wfe_core import StepContext, WorkflowBuilder, WorkflowDefinition
from wfe_host import WorkflowHost


def _count(ctx: StepContext) -> None:
    ctx.workflow.data["i"] += 1


def _collect(ctx: StepContext) -> None:
    ctx.workflow.data["seen"].append(ctx.item)


def loop_definition() -> WorkflowDefinition:
    return (
        WorkflowBuilder(dict)
        .for_each(lambda data: ["a", "b", "c"], lambda b: b.start_with(_collect))
        .while_do(
            lambda data: data["i"] < 5,
            lambda b: b.start_with(_count).wait_for(
                "go", key=lambda data: f"{data['key']}-{data['i']}"
            ),
        )
        .build("migration-loop", 1)
    )


async def main(path: str) -> None:
    async with WorkflowHost.from_settings({"persistence": f"sqlite:///{path}"}) as host:
        host.register(loop_definition())
        done = await host.start_workflow("migration-loop", {"i": 0, "seen": [], "key": "done"})
        waiting = await host.start_workflow("migration-loop", {"i": 0, "seen": [], "key": "w"})
        for i in range(1, 6):
            await host.publish_event("go", f"done-{i}", i)
        for i in range(1, 4):
            with anyio.fail_after(30):
                while True:
                    instance = await host.get_workflow(waiting)
                    if instance.data["i"] == i and any(
                        str(p.status) == "waiting_for_event" for p in instance.pointers
                    ):
                        break
                    await anyio.sleep(0.01)
            if i < 3:
                await host.publish_event("go", f"w-{i}", i)
        finished = await host.wait_for_workflow(done, timeout=30)
        assert str(finished.status) == "complete", finished.status
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("VACUUM")
    conn.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
