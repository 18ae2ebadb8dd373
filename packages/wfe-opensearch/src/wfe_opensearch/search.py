"""The OpenSearch search index of workflow instances."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import (
    OpenSearchException,
    RequestError,
    TransportError,
)

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_core.models import Page, WorkflowInstance
from wfe_core.providers import SearchIndex
from wfe_core.providers import capabilities as cap
from wfe_core.serialization import from_primitive
from wfe_opensearch import _queries
from wfe_opensearch._documents import MAPPING_VERSION, document, index_body
from wfe_opensearch.options import OpenSearchOptions, parse_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable, Mapping

__all__ = ["RESULT_WINDOW", "OpenSearchIndex"]

logger = logging.getLogger("wfe_opensearch")

T = TypeVar("T")

#: Most hits one request pages to with ``from``/``size`` (OpenSearch's
#: ``index.max_result_window``); deeper pages are reached with ``search_after``.
RESULT_WINDOW = 10_000
#: Most instances one bulk request carries.
BULK_CHUNK = 1_000


class OpenSearchIndex(SearchIndex):
    """Workflow instances indexed in OpenSearch (2.x), for search across millions of them.

    The provider owns its index: ``<prefix>-workflows-v<N>`` behind the alias
    ``<prefix>-workflows``, created with the configured shards and replicas and a strict
    mapping (see ``docs/providers/opensearch.md``). Every write carries the instance's
    ``revision`` as an external version, so a late, stale update is refused by the node and
    the index converges to the latest state whatever order updates arrive in.

    The node may be down when the provider is opened: creating the index is then retried on
    the next call, and the host's index queue retries failed updates with back-off. ``text``
    matches words (not substrings) of the reference, definition id, description and data.
    Backend failures raise :class:`~wfe_core.errors.ProviderError`; bad filters
    :class:`ValueError`.
    """

    capabilities = frozenset({cap.SEARCH_BY_DATA, cap.DURABLE, cap.DISTRIBUTED, cap.ASYNCIO_ONLY})

    def __init__(self, url: str | None = None, options: OpenSearchOptions | None = None) -> None:
        self._connection = parse_url(url, options)
        self._client: AsyncOpenSearch | None = None
        self._ready = False
        self._ready_lock = anyio.Lock()
        #: Index updates waiting for the next bulk request, and whether one is under way.
        self._pending: list[_Pending] = []
        self._flushing = False

    @property
    def alias(self) -> str:
        """The name searches and writes go through (``<prefix>-workflows``)."""
        return self._connection.alias

    @property
    def index_name(self) -> str:
        """The index the alias points at for this mapping version."""
        return f"{self.alias}-v{MAPPING_VERSION}"

    @property
    def url(self) -> str:
        return self._connection.url

    async def open(self) -> None:
        """Connect, and create the index unless it exists. A node that does not answer yet
        is not an error here: the index is then set up on the first call that needs it."""
        if self._client is not None:
            return
        options = self._connection.options
        self._client = AsyncOpenSearch(
            hosts=[self._connection.url],
            http_auth=self._connection.auth,
            timeout=options.timeout,
            max_retries=options.max_retries,
            retry_on_timeout=False,
            verify_certs=options.verify_certs,
            ca_certs=options.ca_certs,
        )
        try:
            await self._ensure_index()
        except ProviderError as exc:
            logger.warning("OpenSearch at %s is not ready (%s); will retry", self.url, exc)

    async def close(self) -> None:
        client, self._client = self._client, None
        self._ready = False
        if client is not None:
            await client.close()

    def _require(self) -> AsyncOpenSearch:
        if self._client is None:
            raise ProviderError("the OpenSearch index is not open (use it as 'async with')")
        return self._client

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except OpenSearchException as exc:
            raise ProviderError(f"OpenSearch {what} at {self.url} failed: {_reason(exc)}") from exc

    async def _ensure_index(self) -> None:
        if self._ready:
            return
        client = self._require()
        async with self._ready_lock:
            if not self._ready:  # another task may have set it up meanwhile
                await self._set_up(client)

    async def _set_up(self, client: AsyncOpenSearch) -> None:
        try:
            # ignore=404: a missing alias is the normal first start, not a logged failure.
            found = await client.indices.get_alias(name=self.alias, params={"ignore": 404})
        except OpenSearchException as exc:
            raise ProviderError(f"OpenSearch at {self.url} did not answer: {_reason(exc)}") from exc
        if found and found.get("status") != 404:
            self._check_version(set(found))
        else:
            await self._create_index(client)
        self._ready = True

    def _check_version(self, indices: set[str]) -> None:
        if indices != {self.index_name}:
            raise ConfigurationError(
                f"OpenSearch alias {self.alias} points at {sorted(indices)}, but this "
                f"wfe-opensearch uses {self.index_name} (mapping version {MAPPING_VERSION}): "
                "reindex into it and move the alias (docs/providers/opensearch.md, Operations)"
            )

    async def _create_index(self, client: AsyncOpenSearch) -> None:
        options = self._connection.options
        body = index_body(options.number_of_shards, options.number_of_replicas, self.alias)
        try:
            await client.indices.create(index=self.index_name, body=body)
            logger.info("created OpenSearch index %s (alias %s)", self.index_name, self.alias)
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise ProviderError(
                    f"creating OpenSearch index {self.index_name} failed: {_reason(exc)}"
                ) from exc
            # Another host created it first.
        except OpenSearchException as exc:
            raise ProviderError(
                f"creating OpenSearch index {self.index_name} failed: {_reason(exc)}"
            ) from exc

    async def index_workflow(self, instance: WorkflowInstance) -> None:
        """Index ``instance`` unless the index holds a later revision of it already.

        Calls made while another one's request is under way wait for the next request and
        share it (one bulk request for all of them): the host runs several at once."""
        await self._ensure_index()
        client = self._require()
        pending = _Pending(instance)
        self._pending.append(pending)
        if self._flushing:
            await pending.done.wait()
        else:
            await self._flush(client)
        if pending.error is not None:
            raise ProviderError(pending.error)
        if pending.stale:
            logger.debug(
                "skipped a stale index update of %s (revision %d)",
                instance.id,
                instance.revision,
                extra={"workflow_id": instance.id},
            )

    async def _flush(self, client: AsyncOpenSearch) -> None:
        """Send what is pending, and what arrives meanwhile, until nothing is left."""
        self._flushing = True
        batch: list[_Pending] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[:BULK_CHUNK], self._pending[BULK_CHUNK:]
                failed: str | None = None
                try:
                    outcomes = await self._send_bulk(client, [p.instance for p in batch])
                except ProviderError as exc:
                    failed, outcomes = str(exc), [False] * len(batch)
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    waiting.stale = outcome is False
                    if failed is not None:
                        waiting.error = failed
                    elif isinstance(outcome, str):
                        waiting.error = (
                            f"OpenSearch indexing {waiting.instance.id} at {self.url} failed: "
                            f"{outcome}"
                        )
                    waiting.done.set()
                batch = []
        finally:
            self._flushing = False
            # Cancelled mid-request: nobody sends for the others now; they fail and are retried.
            for waiting in [*batch, *self._pending]:
                if not waiting.done.is_set():
                    waiting.error = (
                        f"OpenSearch indexing {waiting.instance.id}: the request sending it "
                        "was cancelled"
                    )
                    waiting.done.set()
            self._pending = [p for p in self._pending if not p.done.is_set()]

    async def index_many(self, instances: Iterable[WorkflowInstance]) -> int:
        """Index many instances with bulk requests (for backfills and benchmarks); stale ones
        are skipped as by :meth:`index_workflow`. Returns how many documents were written."""
        await self._ensure_index()
        client = self._require()
        written = 0
        batch: list[WorkflowInstance] = []
        for instance in instances:
            batch.append(instance)
            if len(batch) >= BULK_CHUNK:
                written += await self._bulk(client, batch)
                batch = []
        if batch:
            written += await self._bulk(client, batch)
        return written

    async def _bulk(self, client: AsyncOpenSearch, batch: list[WorkflowInstance]) -> int:
        outcomes = await self._send_bulk(client, batch)
        failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
        if failures:
            raise ProviderError(
                f"OpenSearch bulk indexing failed for {len(failures)} instances: {failures[0]}"
            )
        return sum(1 for outcome in outcomes if outcome is True)

    async def _send_bulk(
        self, client: AsyncOpenSearch, batch: list[WorkflowInstance]
    ) -> list[bool | str]:
        """One bulk request; per instance ``True`` (written), ``False`` (stale, skipped) or
        why it failed."""
        lines: list[dict[str, Any]] = []
        for instance in batch:
            lines.append(
                {
                    "index": {
                        "_index": self.alias,
                        "_id": instance.id,
                        "version": instance.revision,
                        "version_type": "external_gte",
                    }
                }
            )
            lines.append(document(instance))
        response = await self._call(
            "bulk indexing",
            client.bulk(
                body=lines,
                params={"refresh": self._connection.options.refresh, "require_alias": "true"},
            ),
        )
        outcomes: list[bool | str] = []
        for item in response["items"]:
            result = item["index"]
            status = result.get("status", 500)
            if status < 300:
                outcomes.append(True)
            elif status == 409:  # stale: a later revision is indexed
                outcomes.append(False)
            else:
                if status == 404:
                    self._ready = False  # the index was deleted: create it again on the retry
                outcomes.append(f"{result.get('_id')}: {status} {result.get('error')}")
        return outcomes

    async def remove_workflow(self, workflow_id: str) -> None:
        """Drop the entry of ``workflow_id``; a no-op when it is not indexed."""
        await self._ensure_index()
        client = self._require()
        try:
            await client.delete(
                index=self.alias,
                id=workflow_id,
                params={"refresh": self._connection.options.refresh, "ignore": 404},
            )
        except OpenSearchException as exc:
            raise ProviderError(
                f"OpenSearch removing {workflow_id} at {self.url} failed: {_reason(exc)}"
            ) from exc

    async def refresh(self) -> None:
        """Make every write so far visible to searches now (tests, after a backfill)."""
        await self._ensure_index()
        await self._call("refresh", self._require().indices.refresh(index=self.alias))

    async def delete_index(self) -> None:
        """Delete the index and its alias (everything indexed is lost; the next call creates
        the index again)."""
        client = self._require()
        try:
            await client.indices.delete(index=self.index_name, params={"ignore": 404})
        except OpenSearchException as exc:
            raise ProviderError(
                f"deleting OpenSearch index {self.index_name} failed: {_reason(exc)}"
            ) from exc
        self._ready = False

    async def search(
        self,
        text: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        skip: int = 0,
        take: int = 20,
    ) -> Page[WorkflowInstance]:
        """Matching instances, best match first, newest first among equals.

        Pages within the node's result window use ``from``/``size``; deeper ones walk there
        with ``search_after`` over a total order (score, creation time, tiebreak), so every page of
        an index that does not change meanwhile holds each instance once.
        """
        query, ranked = _queries.build(text, filters)
        await self._ensure_index()
        client = self._require()
        skip, take = max(skip, 0), max(take, 0)
        base: dict[str, Any] = {
            "query": query,
            "sort": _queries.SORT_BY_SCORE if ranked else _queries.SORT_BY_TIME,
        }
        if skip + take <= RESULT_WINDOW:
            response = await self._call(
                "search",
                client.search(
                    index=self.alias,
                    body={
                        **base,
                        "from": skip,
                        "size": take,
                        "track_total_hits": True,
                        "_source": ["instance"],
                    },
                ),
            )
            hits = response["hits"]["hits"]
            total = response["hits"]["total"]["value"]
        else:
            hits, total = await self._deep_page(client, base, skip, take)
        items = [from_primitive(hit["_source"]["instance"], WorkflowInstance) for hit in hits]
        return Page(items=items, total=total, skip=skip, take=take)

    async def _deep_page(
        self, client: AsyncOpenSearch, base: dict[str, Any], skip: int, take: int
    ) -> tuple[list[dict[str, Any]], int]:
        after: list[Any] | None = None
        # Walk past the skipped hits, reading only their sort values.
        while skip > 0:
            size = min(skip, RESULT_WINDOW)
            body = {
                **base,
                "size": size,
                "_source": False,
                "stored_fields": "_none_",
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            # Only the sort values come back: a tenth of the bytes of whole hits.
            response = await self._call(
                "search",
                client.search(
                    index=self.alias, body=body, params={"filter_path": "hits.hits.sort"}
                ),
            )
            skipped = response.get("hits", {}).get("hits", [])
            if not skipped:
                break
            after = skipped[-1]["sort"]
            skip -= len(skipped)
        hits: list[dict[str, Any]] = []
        total = 0
        first = True
        while skip <= 0 and (first or len(hits) < take):
            size = min(take - len(hits), RESULT_WINDOW)
            body = {**base, "size": size, "_source": ["instance"], "track_total_hits": first}
            if after is not None:
                body["search_after"] = after
            response = await self._call("search", client.search(index=self.alias, body=body))
            if first:
                total = response["hits"]["total"]["value"]
                first = False
            page = response["hits"]["hits"]
            if not page or size == 0:
                break
            hits += page
            after = page[-1]["sort"]
        if first:  # the skipped hits ran out: count the matches
            response = await self._call(
                "count", client.count(index=self.alias, body={"query": base["query"]})
            )
            total = response["count"]
        return hits, total


class _Pending:
    """One ``index_workflow`` call waiting for the bulk request that carries it."""

    __slots__ = ("done", "error", "instance", "stale")

    def __init__(self, instance: WorkflowInstance) -> None:
        self.instance = instance
        self.done = anyio.Event()
        self.error: str | None = None
        self.stale = False


def _reason(exc: OpenSearchException) -> str:
    """One line saying why a request failed."""
    if isinstance(exc, TransportError) and isinstance(exc.status_code, int):
        info = exc.info
        if isinstance(info, dict):
            error = info.get("error")
            if isinstance(error, dict):
                return f"{exc.status_code} {error.get('type')}: {error.get('reason')}"
        return f"{exc.status_code} {exc.error}"
    if isinstance(exc, TransportError) and isinstance(exc.error, str):
        return exc.error  # a connection error: the driver's own words, once
    return f"{type(exc).__name__}: {exc}"
