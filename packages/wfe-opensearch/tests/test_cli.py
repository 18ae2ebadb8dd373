"""``wfe search`` against OpenSearch: a worker's workflows found from the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
import pytest
from click.testing import CliRunner

from wfe_host import WorkflowHost
from wfe_host.cli import main
from wfe_opensearch.search import OpenSearchIndex

if TYPE_CHECKING:
    from collections.abc import Callable

    from wfe_opensearch import OpenSearchOptions


def test_wfe_search_finds_by_text_filters_and_data(
    opensearch_url: str, options: Callable[..., OpenSearchOptions]
) -> None:
    prefix = options().index_prefix
    url = f"{opensearch_url}/?index_prefix={prefix}&number_of_replicas=0"
    index = OpenSearchIndex(url)
    ids: list[str] = []

    async def index_some() -> None:
        from wfe_core import WorkflowBuilder

        flow = WorkflowBuilder(dict).start_with(lambda ctx: None).build("cli-flow", version=1)
        async with WorkflowHost(search=index) as host:
            host.register(flow)
            for n, city in enumerate(["Oslo", "Lima", "Oslo"]):
                workflow_id = await host.start_workflow(
                    "cli-flow", {"city": city, "n": n}, reference=f"ref-{n}"
                )
                await host.wait_for_workflow(workflow_id, timeout=30)
                ids.append(workflow_id)
            with anyio.fail_after(30):
                while (await host.search(filters={"status": "complete"})).total < 3:
                    await index.refresh()
                    await anyio.sleep(0.1)

    anyio.run(index_some)
    runner = CliRunner()
    # The index alone answers: the command's own (empty) persistence is never read.
    base = ["--persistence", "memory", "--search", url, "search"]
    try:
        result = runner.invoke(main, [*base, "oslo", "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        page = json.loads(result.stdout)
        assert page["total"] == 2
        assert {item["id"] for item in page["items"]} == {ids[0], ids[2]}
        assert all("pointers" not in item for item in page["items"])

        result = runner.invoke(
            main, [*base, "--data", "n=1", "--status", "complete"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        assert ids[1] in result.stdout
        assert ids[0] not in result.stdout

        result = runner.invoke(main, [*base, "walrus"], catch_exceptions=False)
        assert result.exit_code == 0
        assert "no matching workflows" in result.stderr

        result = runner.invoke(main, [*base, "--data", "nonsense"])
        assert result.exit_code == 2
        assert "PATH=VALUE" in result.output
    finally:

        async def drop() -> None:
            async with OpenSearchIndex(url) as cleanup:
                await cleanup.delete_index()

        anyio.run(drop)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
