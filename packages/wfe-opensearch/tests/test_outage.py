"""OpenSearch down when the host starts, and stopped while workflows run: the workflows go on,
the index catches up once the node is back, and every document ends at its latest revision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_host import WorkflowHost
from wfe_opensearch.search import OpenSearchIndex

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_core.models import Page, WorkflowInstance
    from wfe_opensearch import OpenSearchOptions

pytestmark = pytest.mark.anyio

flow = (
    WorkflowBuilder(dict)
    .start_with(lambda ctx: None)
    .name("Accept")
    .wait_for("go", key=lambda data: data["key"])
    .name("Go")
    .then(lambda ctx: None)
    .name("Finish")
    .build("outage-flow", version=1)
)


async def _caught_up(host: WorkflowHost, index: OpenSearchIndex, count: int) -> None:
    """Wait until the index holds ``count`` instances, each at its stored revision."""
    with anyio.fail_after(60):
        while True:
            page: Page[WorkflowInstance] = await host.search(take=100)
            stored = {i.id: await host.get_workflow(i.id) for i in page.items}
            if page.total == count and all(
                (i.revision, i.status) == (stored[i.id].revision, stored[i.id].status)
                for i in page.items
            ):
                return
            await anyio.sleep(0.2)
            await index.refresh()


async def test_node_down_at_start_and_stopped_mid_run(
    options: Callable[..., OpenSearchOptions], node_module: Any
) -> None:
    script = node_module
    if script.java_home() is None:
        pytest.skip("no Java to run OpenSearch on (set OPENSEARCH_JAVA_HOME or JAVA_HOME)")
    node = script.Node()  # its own node: this test stops it; not started yet
    index = OpenSearchIndex(node.url, options(refresh="false", timeout=5.0, max_retries=0))
    try:
        async with WorkflowHost(search=index) as host:
            host.register(flow)
            # The node is down: workflows start, run and finish all the same.
            ids = [await host.start_workflow("outage-flow", {"key": f"k{n}"}) for n in range(3)]
            await host.publish_event("go", "k0")
            finished = await host.wait_for_workflow(ids[0], timeout=30)
            assert finished.status == WorkflowStatus.COMPLETE

            await anyio.to_thread.run_sync(node.start)
            await _caught_up(host, index, 3)
            assert (await host.search(filters={"status": "complete"})).total == 1

            # Stopped mid-run: more transitions and a new workflow while it is away.
            await anyio.to_thread.run_sync(node.stop)
            for key in ("k1", "k2"):
                await host.publish_event("go", key)
            ids.append(await host.start_workflow("outage-flow", {"key": "k3"}))
            for workflow_id in ids[1:3]:
                await host.wait_for_workflow(workflow_id, timeout=30)

            await anyio.to_thread.run_sync(node.start)
            await _caught_up(host, index, 4)
            done = await host.search(filters={"status": "complete"})
            assert {i.id for i in done.items} == set(ids[:3])
            (running,) = (await host.search(filters={"status": "runnable"})).items
            assert running.id == ids[3]
    finally:
        node.remove()
