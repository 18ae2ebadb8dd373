"""The ``wfe`` plugin of wfe-opensearch: the OpenSearch search index, named ``opensearch``.

Only hook implementations live here; opensearch-py is imported inside the factory, so listing
providers stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_core.providers import capabilities as cap
from wfe_opensearch.options import OpenSearchOptions

if TYPE_CHECKING:
    from wfe_core.providers import Provider

NAME = "opensearch"
SCHEMES = ("http", "https")


def _search(url: str | None, options: Any) -> Provider:
    from wfe_opensearch.search import OpenSearchIndex

    return OpenSearchIndex(url, options)


@hookimpl
def register_providers() -> list[ProviderSpec]:
    """The OpenSearch search index (http(s)://host:9200)."""
    return [
        ProviderSpec(
            ProviderKind.SEARCH,
            NAME,
            _search,
            summary="Search over workflow instances in OpenSearch 2.x (text, filters, data)",
            url_schemes=SCHEMES,
            options_class=OpenSearchOptions,
            capabilities=frozenset(
                {cap.SEARCH_BY_DATA, cap.DURABLE, cap.DISTRIBUTED, cap.ASYNCIO_ONLY}
            ),
        )
    ]
