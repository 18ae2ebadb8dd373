"""OpenSearch index of workflow instances for WFE: ``OpenSearchIndex``, named ``opensearch``.

``OpenSearchIndex`` is imported lazily, so importing the options (as the plugin does) does not
load opensearch-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wfe_opensearch.options import OpenSearchOptions

if TYPE_CHECKING:
    from wfe_opensearch.search import OpenSearchIndex

__all__ = ["OpenSearchIndex", "OpenSearchOptions"]


def __getattr__(name: str) -> Any:
    if name == "OpenSearchIndex":
        from wfe_opensearch.search import OpenSearchIndex

        return OpenSearchIndex
    raise AttributeError(f"module 'wfe_opensearch' has no attribute {name!r}")
