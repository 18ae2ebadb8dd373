"""Fixtures shared by the wfe-postgres tests (temporary: the server fixture comes from pg-store)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The helpers next to the tests (_cluster.py, the chaos worker module) import by name.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ["WFE_TEST_POSTGRES_URL"]
