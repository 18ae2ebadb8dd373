"""Arbitrary workflow data never breaks the strict mapping: it is indexed, searchable by dotted
path and comes back as stored."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wfe_core.models import WorkflowInstance
from wfe_core.testing.conformance._support import as_stored
from wfe_core.testing.conformance.strategies import workflow_instances
from wfe_opensearch.search import OpenSearchIndex

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from wfe_opensearch import OpenSearchOptions

pytestmark = pytest.mark.anyio

_batches = itertools.count()


@pytest.fixture(scope="module")
def shared_prefix(opensearch_url: str) -> Any:
    """One index for every example of the property (each example its own definition id)."""
    from wfe_core.models import new_id

    prefix = f"test-data-{new_id().lower()}"
    yield prefix

    async def drop() -> None:
        async with OpenSearchIndex(opensearch_url, _options(prefix)) as index:
            await index.delete_index()

    anyio.run(drop)


def _options(prefix: str) -> Any:
    from wfe_opensearch import OpenSearchOptions

    return OpenSearchOptions(index_prefix=prefix, number_of_replicas=0, refresh="true")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(workflow_instances(), min_size=1, max_size=12, unique_by=lambda i: i.id))
def test_any_data_is_indexed_and_comes_back_as_stored(
    opensearch_url: str, shared_prefix: str, instances: list[WorkflowInstance]
) -> None:
    definition = f"batch-{next(_batches)}"
    for instance in instances:
        instance.definition_id = definition

    async def check() -> None:
        async with OpenSearchIndex(opensearch_url, _options(shared_prefix)) as index:
            assert await index.index_many(instances) == len(instances)
            page = await index.search(filters={"definition_id": definition}, take=100)
        assert page.total == len(instances)
        found = {i.id: i for i in page.items}
        for instance in instances:
            assert found[instance.id] == as_stored(instance)

    anyio.run(check)


@pytest.fixture
async def index(
    opensearch_url: str, options: Callable[..., OpenSearchOptions]
) -> AsyncIterator[OpenSearchIndex]:
    async with OpenSearchIndex(opensearch_url, options()) as provider:
        try:
            yield provider
        finally:
            await provider.delete_index()


async def test_awkward_data_shapes_share_one_mapping(index: OpenSearchIndex) -> None:
    shapes: list[Any] = [
        {"a": 1},
        {"a": {"b": 2}},  # the same path, an object now
        {"a": [1, {"b": "x"}, [2, 3]]},
        {"dotted.key": "v", "": "empty key", "sp ace": True},
        {"long": "w" * 40_000},  # beyond a keyword's 32 KB term limit
        ["a", "list"],
        "just text",
        7,
        {},
        {f"k{n}": n for n in range(2_000)},  # many keys: still one field
    ]
    instances = [WorkflowInstance(definition_id="shapes", version=1, data=d) for d in shapes]
    instances[4].reference = "r" * 40_000  # a keyword field over the term limit, too
    for instance in instances:
        await index.index_workflow(instance)
    page = await index.search(take=100)
    assert page.total == len(shapes)
    assert {i.id: i.data for i in page.items} == {i.id: i.data for i in instances}
    assert (await index.search(filters={"data.a.b": "x"})).items[0].id == instances[2].id
    assert {i.id for i in (await index.search(filters={"data.a": "1"})).items} == {
        instances[0].id,
        instances[2].id,
    }
    assert (await index.search(filters={"data.k1999": 1999})).items[0].id == instances[-1].id
