"""The jsonl publisher passes WFE's lifecycle conformance suite, as any provider must."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from wfe_example_plugin.jsonl import JsonlLifecyclePublisher

from wfe_core.testing.conformance import LifecycleSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestJsonlLifecycle(LifecycleSuite):
    __test__ = True

    @pytest.fixture
    async def lifecycle(self, tmp_path: Path) -> AsyncIterator[JsonlLifecyclePublisher]:
        async with JsonlLifecyclePublisher(tmp_path / "events.jsonl") as publisher:
            yield publisher
