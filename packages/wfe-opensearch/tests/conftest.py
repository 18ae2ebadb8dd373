"""Fixtures of the wfe-opensearch tests: one real OpenSearch node per test session.

The node is started by the repository's script (``scripts/opensearch_node.py``: fetched once
through Maven, run as an unprivileged user) unless ``WFE_TEST_OPENSEARCH_URL`` names one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wfe_core.models import new_id
from wfe_core.testing.conformance.servers import url_from_env
from wfe_opensearch import OpenSearchOptions
from wfe_opensearch.search import OpenSearchIndex

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import ModuleType

SCRIPT = Path(__file__).parents[1] / "scripts" / "opensearch_node.py"


def node_script() -> ModuleType:
    """The node script, imported from its file (it is not part of the package)."""
    name = "wfe_opensearch_node_script"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def node_module() -> ModuleType:
    """The node script (``Node``, ``java_home``, ...), for tests that run a node of their own."""
    return node_script()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """The URL of a running node: ``WFE_TEST_OPENSEARCH_URL``, else one started for the session."""
    if url := url_from_env("opensearch"):
        yield url
        return
    script = node_script()
    if script.java_home() is None:
        pytest.skip("no Java to run OpenSearch on (set OPENSEARCH_JAVA_HOME or JAVA_HOME)")
    # A run directory of its own under the temp dir: pytest's are private to this user.
    node = script.Node()
    node.start()
    try:
        yield node.url
    finally:
        node.remove()


def fresh_options(**overrides: object) -> OpenSearchOptions:
    """Options of a fresh index of its own: a unique prefix, no replicas, refresh per write."""
    values: dict[str, object] = {
        "index_prefix": f"test-{new_id().lower()}",
        "number_of_replicas": 0,
        "refresh": "true",
    }
    values.update(overrides)
    return OpenSearchOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
def options() -> Callable[..., OpenSearchOptions]:
    """Makes options of a fresh index (see :func:`fresh_options`)."""
    return fresh_options


@pytest.fixture
async def fresh_index(opensearch_url: str) -> AsyncIterator[OpenSearchIndex]:
    """An entered provider over an empty index of its own, deleted afterwards."""
    async with OpenSearchIndex(opensearch_url, fresh_options()) as index:
        try:
            yield index
        finally:
            await index.delete_index()
