"""The search conformance suite on a real OpenSearch node."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing import SearchSuite

if TYPE_CHECKING:
    from wfe_opensearch.search import OpenSearchIndex


class TestOpenSearchIndex(SearchSuite):
    __test__ = True

    @pytest.fixture
    def search(self, fresh_index: OpenSearchIndex) -> OpenSearchIndex:
        return fresh_index
