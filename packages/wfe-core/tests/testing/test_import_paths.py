"""The suites moved to wfe_core.testing.conformance; their old import paths keep working for
one release and give the very same objects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import wfe_core.testing
from wfe_core.testing import conformance

MOVED = ["_support", "lifecycle", "lock", "persistence", "queue", "scenarios", "search"]


@pytest.mark.parametrize("name", [*MOVED, "servers", "strategies"])
def test_an_old_module_path_is_the_moved_module(name: str) -> None:
    old = importlib.import_module(f"wfe_core.testing.{name}")
    assert old is importlib.import_module(f"wfe_core.testing.conformance.{name}")
    assert getattr(wfe_core.testing, name) is old


def test_old_names_are_the_suites() -> None:
    from wfe_core.testing import PersistenceSuite, QueueSuite, persistence_state_machine

    assert PersistenceSuite is conformance.PersistenceSuite
    assert QueueSuite is conformance.QueueSuite
    assert persistence_state_machine is conformance.persistence_state_machine
    with pytest.raises(AttributeError, match="NoSuchSuite"):
        _ = wfe_core.testing.NoSuchSuite


def test_an_unknown_module_under_the_old_path_is_still_missing() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("wfe_core.testing.no_such_module")


def test_old_paths_work_in_a_fresh_interpreter() -> None:
    """As a provider package's tests import them: the old submodule first, nothing before."""
    code = (
        "from wfe_core.testing.scenarios import WorkflowScenarios\n"
        "from wfe_core.testing.strategies import workflow_instances\n"
        "from wfe_core.testing import PersistenceSuite\n"
        "import wfe_core.testing.conformance as c\n"
        "assert WorkflowScenarios is c.scenarios.WorkflowScenarios\n"
        "assert PersistenceSuite is c.PersistenceSuite\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_importing_the_kit_does_not_import_the_suites() -> None:
    code = (
        "import sys, wfe_core.testing\n"
        "print(sorted(m for m in sys.modules if m.startswith('wfe_core.testing.conformance')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
