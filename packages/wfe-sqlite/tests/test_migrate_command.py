"""``wfe migrate [--check]`` on SQLite files: checking changes nothing, migrating once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from wfe_host.cli import main
from wfe_sqlite import SqlitePersistence
from wfe_sqlite.schema import LATEST_VERSION

SCHEMA_V3 = Path(__file__).parent / "data" / "schema-v3.db"


def _wfe(tmp_path: Path, *args: str) -> tuple[int, str]:
    runner = CliRunner()
    with contextlib.chdir(tmp_path):
        result = runner.invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_check_on_a_new_store_creates_nothing_and_says_what_is_pending(tmp_path: Path) -> None:
    code, out = _wfe(tmp_path, "migrate", "--check")

    assert code == 3
    assert f"schema version 0, needs {LATEST_VERSION}" in out
    assert "run 'wfe migrate'" in out
    assert not (tmp_path / ".wfe").exists()


def test_check_on_an_old_file_leaves_it_byte_for_byte(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(SCHEMA_V3, old)
    before = _digest(old)

    code, out = _wfe(tmp_path, "--persistence", f"sqlite:///{old}", "migrate", "--check", "--json")

    assert code == 3
    (row,) = json.loads(out.split("\nrun ")[0])
    assert (row["version"], row["latest"], row["migrated"]) == (3, LATEST_VERSION, False)
    assert len(row["pending"]) == LATEST_VERSION - 3
    assert _digest(old) == before


def test_migrate_applies_once_then_check_passes(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(SCHEMA_V3, old)
    url = f"sqlite:///{old}"

    code, out = _wfe(tmp_path, "--persistence", url, "migrate")
    assert code == 0, out
    assert f"migrated from schema version 3 to {LATEST_VERSION}" in out

    code, out = _wfe(tmp_path, "--persistence", url, "migrate")
    assert code == 0
    assert f"up to date (schema version {LATEST_VERSION})" in out
    code, _ = _wfe(tmp_path, "--persistence", url, "migrate", "--check")
    assert code == 0
    with contextlib.closing(sqlite3.connect(old)) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM wfe_schema_version")]
    assert versions == list(range(1, LATEST_VERSION + 1))  # each applied exactly once


def test_memory_has_no_schema(tmp_path: Path) -> None:
    code, out = _wfe(tmp_path, "--persistence", "memory", "migrate", "--check")
    assert code == 0
    assert "nothing to migrate" in out


@pytest.mark.anyio
async def test_schema_status_does_not_need_an_open_provider(tmp_path: Path) -> None:
    provider = SqlitePersistence(f"sqlite:///{tmp_path / 'x.db'}")
    status = await provider.schema_status()
    assert (status.current, status.up_to_date) == (0, False)
    assert not (tmp_path / "x.db").exists()
    status = await provider.migrate_schema()
    assert (status.current, status.up_to_date, status.pending) == (LATEST_VERSION, True, ())
