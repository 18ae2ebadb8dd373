"""CI runs what a newcomer runs, and in CI nothing that proves a promise can quietly skip."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)


def test_ci_runs_the_readmes_test_line_exactly() -> None:
    readme = (ROOT / "README.md").read_text()
    install_line, test_line = (block.strip() for block in _shell_blocks(readme)[:2])
    assert "nox" in test_line
    assert "wfe run" in install_line
    ci = (ROOT / ".ci" / "run").read_text()
    (line,) = re.findall(r"^LINE='(.*)'$", ci, flags=re.MULTILINE)
    assert line == test_line
    # ... with a bare PATH, so a tool the line does not install is not found there either.
    assert 'PATH="$bin:/usr/bin:/bin" CI=true' in ci
    assert test_line in (ROOT / "docs" / "development.md").read_text()


def _run_pytest(tmp_path: Path, body: str, *, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp_path / "test_it.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


MISSING_TOOL = """
import pytest

def test_needs_a_tool():
    pytest.skip("needs the frobnicate executable")
"""

NOT_APPLICABLE = """
import pytest

def test_a_conformance_check():
    pytest.skip("MemoryLock lacks the 'distributed' capability")
"""


def test_under_ci_a_skipped_test_fails_naming_why(tmp_path: Path) -> None:
    completed = _run_pytest(tmp_path, MISSING_TOOL, ci="true")
    assert completed.returncode == 1, completed.stdout
    assert "1 failed" in completed.stdout
    assert "skipped under CI (needs the frobnicate executable)" in completed.stdout


def test_outside_ci_it_is_a_skip(tmp_path: Path) -> None:
    completed = _run_pytest(tmp_path, MISSING_TOOL, ci=None)
    assert completed.returncode == 0, completed.stdout
    assert "1 skipped" in completed.stdout


def test_a_conformance_test_that_does_not_apply_may_skip_in_ci(tmp_path: Path) -> None:
    completed = _run_pytest(tmp_path, NOT_APPLICABLE, ci="true")
    assert completed.returncode == 0, completed.stdout
    assert "1 skipped" in completed.stdout
