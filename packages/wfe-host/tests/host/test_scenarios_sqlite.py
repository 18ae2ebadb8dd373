"""The end-to-end scenarios on a host whose providers are resolved by settings to SQLite
(skipped when wfe-sqlite is not installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.errors import ProviderNotFoundError
from wfe_core.testing.conformance.scenarios import WorkflowScenarios
from wfe_host import WorkflowHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class TestSqliteScenarios(WorkflowScenarios):
    __test__ = True

    @pytest.fixture
    async def host(self, tmp_path: Path) -> AsyncIterator[WorkflowHost]:
        try:
            host = WorkflowHost.from_settings({"persistence": f"sqlite:///{tmp_path}/wfe.db"})
        except ProviderNotFoundError:
            pytest.skip("wfe-sqlite is not installed")
        async with host:
            yield host


@pytest.mark.anyio
async def test_two_hosts_on_one_sqlite_file_share_the_work(tmp_path: Path) -> None:
    """Two hosts (as two processes would) on one database: every step runs once, and a
    waiter on one host sees workflows the other finished, with process-local lifecycle
    events."""
    import anyio
    import attrs

    from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus

    @attrs.define
    class Count:
        count: int = 0

    runs: list[str] = []

    async def step(ctx: StepContext) -> None:
        runs.append(ctx.idempotency_key)
        await anyio.sleep(0.01)
        ctx.data.count += 1

    definition = (
        WorkflowBuilder(Count)
        .start_with(step)
        .parallel(
            lambda p: p.branch(lambda b: b.start_with(step)).branch(lambda b: b.start_with(step))
        )
        .then(step)
        .build("shared-sqlite")
    )
    url = f"sqlite:///{tmp_path}/shared.db"
    try:
        one = WorkflowHost.from_settings({"persistence": url})
        two = WorkflowHost.from_settings({"persistence": url})
    except ProviderNotFoundError:
        pytest.skip("wfe-sqlite is not installed")
    async with one, two:
        one.register(definition)
        two.register(definition)
        ids = [await (one if n % 2 else two).start_workflow(definition.id) for n in range(10)]
        finished = [await one.wait_for_workflow(i, timeout=60) for i in ids]
    assert all(i.status == WorkflowStatus.COMPLETE for i in finished)
    assert all(i.data.count == 4 for i in finished)
    assert len(runs) == len(set(runs)) == 40
