"""host.search without a search provider scans persistence with the search filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from wfe_core import WorkflowBuilder
from wfe_host import WorkflowHost

pytestmark = pytest.mark.anyio

flow = WorkflowBuilder(dict).start_with(lambda ctx: None).build("scan-flow", version=1)


async def test_completion_and_data_filters_and_unknown_keys() -> None:
    async with WorkflowHost() as host:
        host.register(flow)
        ids = [
            await host.start_workflow("scan-flow", {"customer": {"tier": n % 2}, "tags": ["a"]})
            for n in range(3)
        ]
        for workflow_id in ids:
            await host.wait_for_workflow(workflow_id, timeout=10)
        now = datetime.now(UTC)

        async def found(**filters: object) -> set[str]:
            return {i.id for i in (await host.search(filters=filters)).items}

        assert await found(**{"data.customer.tier": 1}) == {ids[1]}
        assert await found(**{"data.customer.tier": "0"}) == {ids[0], ids[2]}
        assert await found(**{"data.tags": "a"}) == set(ids)
        assert await found(completed_before=now + timedelta(seconds=1)) == set(ids)
        assert await found(completed_after=now + timedelta(seconds=1)) == set()
        with pytest.raises(ValueError, match="colour"):
            await host.search(filters={"colour": "red"})
