"""Fixtures shared by the wfe-postgres tests (temporary: the server fixture comes from pg-store)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ["WFE_TEST_POSTGRES_URL"]
