"""Workflows of ``bench.postgres_hosts``: run by its ``wfe worker -m bench.postgres_flows``
processes, and by its event round trip host."""

from __future__ import annotations

import time
from typing import Any

import attrs

from wfe_core import StepContext, WorkflowBuilder

__all__ = ["Trivial", "Waiting", "arrivals", "definitions", "trivial", "waiting"]


@attrs.define
class Trivial:
    count: int = 0


@attrs.define
class Waiting:
    key: str = ""


async def _bump(ctx: StepContext) -> None:
    ctx.data.count += 1


trivial = WorkflowBuilder(Trivial).start_with(_bump).then(_bump).then(_bump).build("pg-trivial", 1)

#: When the step after the wait ran, by event key (perf_counter).
arrivals: dict[str, float] = {}


async def _arrived(ctx: StepContext) -> Any:
    arrivals[ctx.data.key] = time.perf_counter()


waiting = (
    WorkflowBuilder(Waiting)
    .start_with(lambda ctx: None)
    .wait_for("go", key=lambda data: data.key)
    .then(_arrived)
    .build("pg-waiting", 1)
)

definitions = [trivial]
