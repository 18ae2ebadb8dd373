"""The search conformance suite on a real OpenSearch node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from opensearchpy import AsyncOpenSearch

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_core.models import WorkflowInstance
from wfe_core.testing.conformance import SearchSuite
from wfe_opensearch.search import OpenSearchIndex

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_opensearch import OpenSearchOptions


class TestOpenSearchIndex(SearchSuite):
    __test__ = True

    @pytest.fixture
    def search(self, fresh_index: OpenSearchIndex) -> OpenSearchIndex:
        return fresh_index


@pytest.mark.anyio
async def test_an_index_deleted_under_a_running_provider_is_created_again(
    fresh_index: OpenSearchIndex, options: Callable[..., OpenSearchOptions]
) -> None:
    """A write never auto-creates an index of the cluster's defaults: it fails, and the next
    one (the index queue's retry) creates the provider's own index again."""
    instance = WorkflowInstance(definition_id="again", version=1, reference="back")
    await fresh_index.index_workflow(instance)
    await fresh_index.delete_index()
    await fresh_index.index_workflow(instance)  # the provider knows it deleted it
    assert [i.id for i in (await fresh_index.search("back")).items] == [instance.id]

    other = OpenSearchIndex(fresh_index.url, options(index_prefix=fresh_index.alias[:-10]))
    async with other:
        await other.delete_index()  # behind the first provider's back
    with pytest.raises(ProviderError, match=r"index_not_found|alias"):
        await fresh_index.index_workflow(instance)
    await fresh_index.index_workflow(instance)
    page = await fresh_index.search("back")
    assert [i.id for i in page.items] == [instance.id]


@pytest.mark.anyio
async def test_an_alias_on_another_mapping_version_is_refused(
    opensearch_url: str, options: Callable[..., OpenSearchOptions]
) -> None:
    """A release with another mapping does not write into an index it does not know."""
    settings = options()
    async with OpenSearchIndex(opensearch_url, settings) as current:
        await current.delete_index()
        assert current.index_name.endswith("-v1")
        client = AsyncOpenSearch(hosts=[opensearch_url])
        older = f"{current.alias}-v0"
        try:
            body = {"settings": {"number_of_replicas": 0}, "aliases": {current.alias: {}}}
            await client.indices.create(index=older, body=body)
            with pytest.raises(ConfigurationError, match=r"points at \['.*-v0'\].*reindex"):
                await current.search()
        finally:
            await client.indices.delete(index=older)
            await client.close()


@pytest.mark.anyio
async def test_concurrent_updates_share_requests_and_the_newest_revision_wins(
    fresh_index: OpenSearchIndex,
) -> None:
    """The host indexes several instances at once: every call returns once its own update is
    written, and updates of one instance arriving together still end at its newest revision."""
    many = [WorkflowInstance(definition_id="together", version=1, revision=1) for _ in range(40)]
    contested = many[0]
    versions = [
        WorkflowInstance(
            id=contested.id, definition_id="together", version=1, reference=f"rev{n}", revision=n
        )
        for n in (3, 7, 5, 2)
    ]
    async with anyio.create_task_group() as tg:
        for instance in [*many[1:], *versions]:
            tg.start_soon(fresh_index.index_workflow, instance)
    page = await fresh_index.search(filters={"definition_id": "together"}, take=100)
    assert page.total == 40
    (found,) = [i for i in page.items if i.id == contested.id]
    assert (found.revision, found.reference) == (7, "rev7")
