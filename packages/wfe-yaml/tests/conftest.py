"""Shared fixtures of the wfe-yaml tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The helpers module beside this file (tests run with --import-mode=importlib, which does
# not put test folders on sys.path).
sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def deno_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Deno keeps its caches in a temporary DENO_DIR, never in the user's."""
    path = tmp_path_factory.mktemp("deno-dir")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("DENO_DIR", str(path))
    patcher.setenv("DENO_NO_UPDATE_CHECK", "1")
    yield path
    patcher.undo()
