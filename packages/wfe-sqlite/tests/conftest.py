"""Fixtures shared by the wfe-sqlite tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The URL of a fresh database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'wfe.db'}"
