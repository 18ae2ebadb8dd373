"""The conformance suite of :class:`~wfe_core.providers.SearchIndex`."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from wfe_core.models import WorkflowInstance, WorkflowStatus, new_id
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance._support import as_stored, now_ms, require

if TYPE_CHECKING:
    from wfe_core.providers import SearchIndex

__all__ = ["SearchSuite"]


def _instance(**fields: Any) -> WorkflowInstance:
    values: dict[str, Any] = {
        "definition_id": "plain-flow",
        "version": 1,
        "create_time": now_ms(),
        "data": {"count": 1},
    }
    values.update(fields)
    return WorkflowInstance(**values)


def _ids(items: Any) -> list[str]:
    return [item.id for item in items]


class SearchSuite:
    """Contract tests every :class:`~wfe_core.providers.SearchIndex` must pass.

    Subclass it in a test module, set ``__test__ = True`` and supply an async ``search``
    fixture that yields an entered provider over an empty index (fresh per test). Searches
    must see what was indexed before them (refresh on write if the backend needs it)::

        class TestMySearch(SearchSuite):
            __test__ = True

            @pytest.fixture
            async def search(self):
                async with MySearch(...) as provider:
                    yield provider

    Texts searched for are whole words, so token-based backends and substring matchers agree.
    """

    __test__ = False

    async def _index(self, search: SearchIndex, *instances: WorkflowInstance) -> None:
        for instance in instances:
            await search.index_workflow(instance)

    @pytest.mark.anyio
    async def test_no_text_lists_everything_newest_first(self, search: SearchIndex) -> None:
        now = now_ms()
        old, middle, new = (
            _instance(create_time=now - timedelta(minutes=minutes)) for minutes in (3, 2, 1)
        )
        await self._index(search, middle, new, old)
        page = await search.search()
        assert page.total == 3
        assert _ids(page.items) == _ids([new, middle, old])
        page = await search.search("")
        assert page.total == 3

    @pytest.mark.anyio
    async def test_results_are_instances_as_stored(self, search: SearchIndex) -> None:
        instance = _instance(reference="stored-form", data={"nested": {"list": [1, "два"]}})
        await self._index(search, instance)
        (found,) = (await search.search()).items
        assert found == as_stored(instance)

    @pytest.mark.anyio
    async def test_text_matches_reference_ignoring_case(self, search: SearchIndex) -> None:
        zebra = _instance(reference="Invoice ZEBRA 7")
        other = _instance(reference="Invoice lion 8")
        await self._index(search, zebra, other)
        for text in ("zebra", "ZEBRA", "Zebra"):
            assert _ids((await search.search(text)).items) == [zebra.id], text
        assert (await search.search("walrus")).total == 0

    @pytest.mark.anyio
    async def test_text_matches_description_and_definition_id(self, search: SearchIndex) -> None:
        described = _instance(description="Ship the parcel to Oslo")
        defined = _instance(definition_id="payroll")
        await self._index(search, described, defined, _instance())
        assert _ids((await search.search("oslo")).items) == [described.id]
        assert _ids((await search.search("PAYROLL")).items) == [defined.id]

    @pytest.mark.anyio
    async def test_text_matches_data(self, search: SearchIndex) -> None:
        require(search, cap.SEARCH_BY_DATA)
        nested = _instance(data={"customer": {"city": "Timbuktu", "tags": ["gold"]}})
        await self._index(search, nested, _instance(data={"customer": {"city": "Paris"}}))
        assert _ids((await search.search("timbuktu")).items) == [nested.id]
        assert _ids((await search.search("Gold")).items) == [nested.id]

    @pytest.mark.anyio
    async def test_filters(self, search: SearchIndex) -> None:
        now = now_ms()
        a = _instance(
            definition_id="alpha",
            version=1,
            status=WorkflowStatus.RUNNABLE,
            reference="r1",
            create_time=now - timedelta(hours=3),
        )
        b = _instance(
            definition_id="alpha",
            version=2,
            status=WorkflowStatus.COMPLETE,
            reference="r2",
            create_time=now - timedelta(hours=2),
        )
        c = _instance(
            definition_id="beta",
            version=1,
            status=WorkflowStatus.COMPLETE,
            reference="r1",
            create_time=now - timedelta(hours=1),
        )
        await self._index(search, a, b, c)

        async def found(**filters: Any) -> set[str]:
            page = await search.search(filters=filters)
            assert page.total == len(page.items)
            return set(_ids(page.items))

        assert await found(status=WorkflowStatus.COMPLETE) == {b.id, c.id}
        assert await found(definition_id="alpha") == {a.id, b.id}
        assert await found(reference="r1") == {a.id, c.id}
        assert await found(version=1) == {a.id, c.id}
        assert await found(created_after=now - timedelta(minutes=150)) == {b.id, c.id}
        assert await found(created_before=now - timedelta(minutes=90)) == {a.id, b.id}
        assert await found(
            created_after=now - timedelta(minutes=150),
            created_before=now - timedelta(minutes=90),
        ) == {b.id}
        assert await found(definition_id="alpha", status=WorkflowStatus.COMPLETE) == {b.id}
        assert await found(definition_id="gamma") == set()

    @pytest.mark.anyio
    async def test_text_and_filters_combine(self, search: SearchIndex) -> None:
        running = _instance(reference="falcon one", status=WorkflowStatus.RUNNABLE)
        done = _instance(reference="falcon two", status=WorkflowStatus.COMPLETE)
        await self._index(search, running, done, _instance(reference="heron"))
        page = await search.search("falcon", filters={"status": WorkflowStatus.COMPLETE})
        assert (_ids(page.items), page.total) == ([done.id], 1)

    @pytest.mark.anyio
    async def test_paging_and_total(self, search: SearchIndex) -> None:
        now = now_ms()
        instances = [
            _instance(reference=f"batch {index}", create_time=now - timedelta(minutes=index))
            for index in range(7)
        ]
        await self._index(search, *instances)
        page = await search.search(skip=2, take=3)
        assert page.total == 7
        assert _ids(page.items) == _ids(instances[2:5])
        page = await search.search("batch", skip=5, take=10)
        assert page.total == 7
        assert _ids(page.items) == _ids(instances[5:])
        page = await search.search(skip=20)
        assert (list(page.items), page.total) == ([], 7)

    @pytest.mark.anyio
    async def test_index_again_replaces_the_entry(self, search: SearchIndex) -> None:
        instance = _instance(reference="walrus", status=WorkflowStatus.RUNNABLE)
        await self._index(search, instance)
        instance.reference = "narwhal"
        instance.status = WorkflowStatus.COMPLETE
        await self._index(search, instance)
        assert (await search.search("walrus")).total == 0
        page = await search.search("narwhal")
        assert _ids(page.items) == [instance.id]
        assert page.items[0].status == WorkflowStatus.COMPLETE
        assert (await search.search()).total == 1

    @pytest.mark.anyio
    async def test_remove(self, search: SearchIndex) -> None:
        kept, removed = _instance(reference="keep"), _instance(reference="drop")
        await self._index(search, kept, removed)
        await search.remove_workflow(removed.id)
        await search.remove_workflow(removed.id)  # absent: a no-op
        await search.remove_workflow(new_id())
        assert _ids((await search.search()).items) == [kept.id]
        assert (await search.search("drop")).total == 0

    @pytest.mark.anyio
    async def test_filters_by_completion_time(self, search: SearchIndex) -> None:
        now = now_ms()
        early = _instance(status=WorkflowStatus.COMPLETE, complete_time=now - timedelta(hours=2))
        late = _instance(status=WorkflowStatus.COMPLETE, complete_time=now - timedelta(hours=1))
        running = _instance(status=WorkflowStatus.RUNNABLE)
        await self._index(search, early, late, running)

        async def found(**filters: Any) -> set[str]:
            return set(_ids((await search.search(filters=filters)).items))

        assert await found(completed_after=now - timedelta(minutes=90)) == {late.id}
        assert await found(completed_before=now - timedelta(minutes=90)) == {early.id}
        assert await found(completed_before=now) == {early.id, late.id}

    @pytest.mark.anyio
    async def test_filters_by_data_field(self, search: SearchIndex) -> None:
        oslo = _instance(data={"customer": {"city": "Oslo", "tier": 2}, "tags": ["gold", "eu"]})
        paris = _instance(data={"customer": {"city": "Paris", "tier": 1}, "tags": ["eu"]})
        await self._index(search, oslo, paris, _instance(data=None))

        async def found(**filters: Any) -> set[str]:
            page = await search.search(filters=filters)
            assert page.total == len(page.items)
            return set(_ids(page.items))

        assert await found(**{"data.customer.city": "Oslo"}) == {oslo.id}
        assert await found(**{"data.customer.tier": 1}) == {paris.id}
        assert await found(**{"data.customer.tier": "2"}) == {oslo.id}
        assert await found(**{"data.tags": "eu"}) == {oslo.id, paris.id}
        assert await found(**{"data.customer.city": ["Oslo", "Paris"]}) == {oslo.id, paris.id}
        assert await found(**{"data.customer.city": "Rome"}) == set()
        assert await found(**{"data.customer.city": "Paris", "data.tags": "gold"}) == set()

    @pytest.mark.anyio
    async def test_unknown_filter_is_refused(self, search: SearchIndex) -> None:
        with pytest.raises(ValueError, match="colour"):
            await search.search(filters={"colour": "red"})

    @pytest.mark.anyio
    async def test_a_stale_revision_does_not_replace_a_newer_entry(
        self, search: SearchIndex
    ) -> None:
        instance = _instance(reference="newer", revision=5, status=WorkflowStatus.COMPLETE)
        await self._index(search, instance)
        stale = _instance(id=instance.id, reference="older", revision=3)
        await self._index(search, stale)
        (found,) = (await search.search()).items
        assert (found.reference, found.revision, found.status) == (
            "newer",
            5,
            WorkflowStatus.COMPLETE,
        )
        newer = _instance(id=instance.id, reference="newest", revision=6)
        await self._index(search, newer)
        assert _ids((await search.search("newest")).items) == [instance.id]
