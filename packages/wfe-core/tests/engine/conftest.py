from __future__ import annotations

import pytest

from wfe_core.testing.harness import EngineHarness


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine() -> EngineHarness:
    return EngineHarness()
