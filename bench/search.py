"""``python -m bench.search [--quick] [--instances N] [--url URL]``: the OpenSearch search index.

Starts a node with the repository's script (unless ``--url`` names one), bulk-indexes N
instances (100,000; 20,000 with ``--quick``) through ``OpenSearchIndex.index_many``, indexes
1,000 one at a time from one caller and 4,000 from 4 at once (as the host's index queue does;
concurrent calls share bulk requests), then times searches of each
kind over the whole index. Prints one line per figure; not a test (no thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from wfe_core.models import WorkflowInstance, WorkflowStatus
from wfe_opensearch import OpenSearchOptions
from wfe_opensearch.search import OpenSearchIndex

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "packages" / "wfe-opensearch" / "scripts" / "opensearch_node.py"
CITIES = ["Oslo", "Lima", "Paris", "Accra", "Quito", "Hanoi", "Perth", "Cairo", "Dakar", "Riga"]


def _node_script() -> Any:
    spec = importlib.util.spec_from_file_location("opensearch_node", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _instances(count: int, start: int = 0) -> list[WorkflowInstance]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        WorkflowInstance(
            definition_id=f"flow-{n % 5}",
            version=1,
            status=WorkflowStatus.COMPLETE if n % 3 else WorkflowStatus.RUNNABLE,
            reference=f"order {n}",
            description=f"Order {n} for {CITIES[n % 10]}",
            data={"order": n, "customer": {"city": CITIES[n % 10], "tier": n % 4}, "lines": 3},
            create_time=base + timedelta(seconds=n),
            complete_time=base + timedelta(seconds=n + 5) if n % 3 else None,
            revision=3,
        )
        for n in range(start, start + count)
    ]


async def _timed(label: str, runs: int, call: Any) -> None:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"  search {label}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms")


async def _consume(index: OpenSearchIndex, queue: list[WorkflowInstance]) -> None:
    while queue:
        await index.index_workflow(queue.pop())


async def _run(url: str, count: int, runs: int) -> None:
    options = OpenSearchOptions(index_prefix="bench", number_of_replicas=0)
    async with OpenSearchIndex(url, options) as index:
        await index.delete_index()
        instances = _instances(count)
        began = time.perf_counter()
        await index.index_many(instances)
        await index.refresh()
        elapsed = time.perf_counter() - began
        print(f"  bulk indexing: {count:,} instances in {elapsed:.1f} s = {count / elapsed:,.0f}/s")

        singles: list[WorkflowInstance] = []
        for callers in (1, 4):
            batch = _instances(1_000 * callers, start=count + len(singles))
            singles += batch
            queue = list(batch)
            began = time.perf_counter()

            await asyncio.gather(*(_consume(index, queue) for _ in range(callers)))
            elapsed = time.perf_counter() - began
            how = "as the host's index queue" if callers == 4 else "one caller"
            print(f"  one at a time ({callers} concurrent, {how}): {len(batch) / elapsed:,.0f}/s")
        await index.refresh()
        total = count + len(singles)
        assert (await index.search(take=0)).total == total

        await _timed("no text, first page", runs, lambda: index.search(take=20))
        await _timed("text 'oslo'", runs, lambda: index.search("oslo", take=20))
        await _timed(
            "status + data.customer.city",
            runs,
            lambda: index.search(
                filters={"status": "complete", "data.customer.city": "Lima"}, take=20
            ),
        )
        await _timed(
            "created range",
            runs,
            lambda: index.search(
                filters={
                    "created_after": datetime(2026, 1, 1, 5, tzinfo=UTC),
                    "created_before": datetime(2026, 1, 1, 6, tzinfo=UTC),
                }
            ),
        )
        deep = total // 2
        await _timed(
            f"deep page (skip {deep:,})", max(runs // 10, 3), lambda: index.search(skip=deep)
        )
        await index.delete_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 instances, fewer searches")
    parser.add_argument("--instances", type=int, help="instances to index (default 100,000)")
    parser.add_argument("--url", help="a running node instead of one started here")
    args = parser.parse_args(argv)
    count = args.instances or (20_000 if args.quick else 100_000)
    runs = 20 if args.quick else 100
    node = None
    url = args.url
    if url is None:
        node = _node_script().Node(heap="1g")
        node.start()
        url = node.url
    try:
        print(f"OpenSearch search index, {count:,} instances ({url}):")
        asyncio.run(_run(url, count, runs))
    finally:
        if node is not None:
            node.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
