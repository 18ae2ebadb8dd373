"""End to end: workflows run on a host with OpenSearch configured, found through host.search;
totals and deep paging over more instances than the node's result window."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.models import WorkflowInstance
from wfe_core.testing.conformance._support import now_ms
from wfe_host import WorkflowHost
from wfe_opensearch.search import RESULT_WINDOW, OpenSearchIndex

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from wfe_core.models import Page
    from wfe_opensearch import OpenSearchOptions

pytestmark = pytest.mark.anyio

order_flow = (
    WorkflowBuilder(dict)
    .start_with(lambda ctx: None)
    .name("Accept")
    .wait_for("ship", key=lambda data: data["order"])
    .name("Ship")
    .build("order-flow", version=1)
)


@pytest.fixture
async def index(
    opensearch_url: str, options: Callable[..., OpenSearchOptions]
) -> AsyncIterator[OpenSearchIndex]:
    """A provider as a host uses it: no refresh per write. Entered; a host entering it again
    closes it when it stops, so it is opened again to delete its index."""
    provider = OpenSearchIndex(opensearch_url, options(refresh="false"))
    await provider.open()
    try:
        yield provider
    finally:
        await provider.open()
        await provider.delete_index()
        await provider.close()


async def eventually(
    index: OpenSearchIndex,
    search: Callable[[], Any],
    done: Callable[[Page[WorkflowInstance]], bool],
    timeout: float = 30,
) -> Page[WorkflowInstance]:
    """The first page ``search()`` gives that satisfies ``done`` (indexing is asynchronous)."""
    with anyio.fail_after(timeout):
        while True:
            await index.refresh()
            page: Page[WorkflowInstance] = await search()
            if done(page):
                return page
            await anyio.sleep(0.1)


async def test_workflows_are_found_by_text_status_dates_and_data(index: OpenSearchIndex) -> None:
    cities = ["Oslo", "Timbuktu", "Oslo", "Lima"]
    async with WorkflowHost(search=index) as host:
        host.register(order_flow)
        first = [
            await host.start_workflow(
                "order-flow", {"order": f"o{n}", "customer": {"city": city}}, reference=f"r{n}"
            )
            for n, city in enumerate(cities[:2])
        ]
        between = now_ms()
        await anyio.sleep(0.01)
        second = [
            await host.start_workflow(
                "order-flow", {"order": f"o{n}", "customer": {"city": city}}, reference=f"r{n}"
            )
            for n, city in enumerate(cities[2:], start=2)
        ]
        everyone = set(first + second)
        page = await eventually(index, lambda: host.search(), lambda p: p.total == 4)
        assert {i.id for i in page.items} == everyone
        assert all(i.status == WorkflowStatus.RUNNABLE for i in page.items)

        # By text in the data, the data restored as the definition has it.
        found = await host.search("timbuktu")
        assert [i.id for i in found.items] == [first[1]]
        assert found.items[0].data == {"order": "o1", "customer": {"city": "Timbuktu"}}

        # By status, once they complete.
        for key in ("o0", "o3"):
            await host.publish_event("ship", key)
        for workflow_id in (first[0], second[1]):
            await host.wait_for_workflow(workflow_id, timeout=30)
        done = await eventually(
            index,
            lambda: host.search(filters={"status": "complete"}),
            lambda p: p.total == 2,
        )
        assert {i.id for i in done.items} == {first[0], second[1]}
        assert (await host.search(filters={"status": "runnable"})).total == 2

        # By date range: creation and completion.
        later = await host.search(filters={"created_after": between})
        assert {i.id for i in later.items} == set(second)
        earlier = await host.search(filters={"created_before": between})
        assert {i.id for i in earlier.items} == set(first)
        assert (await host.search(filters={"completed_after": between})).total == 2
        assert (await host.search(filters={"completed_before": between})).total == 0

        # By a data field, alone and with text and status.
        oslo = await host.search(filters={"data.customer.city": "Oslo"})
        assert {i.id for i in oslo.items} == {first[0], second[0]}
        page = await host.search("oslo", filters={"status": "complete"})
        assert [i.id for i in page.items] == [first[0]]
        assert (await host.search(filters={"data.order": "o3"})).items[0].id == second[1]


async def test_host_from_settings_selects_opensearch_by_url(
    opensearch_url: str, options: Callable[..., OpenSearchOptions]
) -> None:
    prefix = options().index_prefix
    settings = {"search": {"url": opensearch_url, "options": {"index_prefix": prefix}}}
    async with WorkflowHost.from_settings(settings) as host:
        assert isinstance(host.search_index, OpenSearchIndex)
        index = host.search_index
        host.register(order_flow)
        workflow_id = await host.start_workflow("order-flow", {"order": "x"}, reference="cfg")
        page = await eventually(index, lambda: host.search("cfg"), lambda p: p.total == 1)
        assert page.items[0].id == workflow_id
        await index.delete_index()


def _instances(count: int) -> list[WorkflowInstance]:
    start = now_ms() - timedelta(days=1)
    return [
        WorkflowInstance(
            definition_id="bulk-flow" if n % 3 else "other-flow",
            version=1,
            status=WorkflowStatus.COMPLETE if n % 2 else WorkflowStatus.RUNNABLE,
            reference=f"bulk {n}",
            data={"n": n, "group": f"g{n % 10}", "note": "parrot" if n % 7 == 0 else "plain"},
            create_time=start + timedelta(seconds=n // 2),  # pairs share a time: ties on id
        )
        for n in range(count)
    ]


async def test_totals_and_deep_paging_beyond_the_result_window(index: OpenSearchIndex) -> None:
    count = RESULT_WINDOW + 1_500
    instances = _instances(count)
    assert await index.index_many(instances) == count
    await index.refresh()

    assert (await index.search(take=0)).total == count
    assert (await index.search("parrot")).total == len(range(0, count, 7))
    assert (await index.search(filters={"status": "complete"})).total == count // 2
    assert (await index.search(filters={"data.group": "g3"})).total == count // 10
    complete_bulk = [
        i for i in instances if i.status == "complete" and i.definition_id == "bulk-flow"
    ]
    page = await index.search(filters={"status": "complete", "definition_id": "bulk-flow"})
    assert page.total == len(complete_bulk)

    # Every page of everything, beyond the window too: each instance exactly once, newest first.
    seen: list[str] = []
    take = 2_000
    for skip in range(0, count, take):
        page = await index.search(skip=skip, take=take)
        assert page.total == count
        seen += [i.id for i in page.items]
    assert len(seen) == count
    assert set(seen) == {i.id for i in instances}
    times = {i.id: i.create_time for i in instances}
    assert all(times[a] >= times[b] for a, b in itertools.pairwise(seen))

    # A deep page of a ranked (text) search, and one past the end.
    parrots = await index.search("parrot", skip=0, take=count)
    deep = await index.search("parrot", skip=1_000, take=5)
    assert [i.id for i in deep.items] == [i.id for i in parrots.items[1_000:1_005]]
    past = await index.search(skip=count + 10, take=5)
    assert (list(past.items), past.total) == ([], count)
