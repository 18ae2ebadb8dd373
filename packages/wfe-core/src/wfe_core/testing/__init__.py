"""The kit for testing your own workflows and steps: :class:`EngineHarness` runs the executor
without a host, :class:`ManualClock` is a :class:`~wfe_core.clock.Clock` that moves only when
told to, and :mod:`wfe_core.testing.definitions` generates random workflow definitions.

The suites for provider authors are in :mod:`wfe_core.testing.conformance`. Their old paths
(``from wfe_core.testing import PersistenceSuite``, ``wfe_core.testing.scenarios``,
``wfe_core.testing.strategies``, ...) keep working in 0.1 and go in 0.2. Needs the ``testing``
extra (``pip install wfe-core[testing]``: pytest, hypothesis).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest

from wfe_core.testing import _moved

# Before the kit is imported, so its plain ``assert``s report values like tests do.
pytest.register_assert_rewrite("wfe_core.testing.definitions", "wfe_core.testing.harness")

from wfe_core.testing.clock import ManualClock  # noqa: E402
from wfe_core.testing.harness import EngineHarness  # noqa: E402

if TYPE_CHECKING:
    from wfe_core.testing.conformance import (
        LifecycleSuite,
        LockSuite,
        PersistenceSuite,
        QueueSuite,
        SearchSuite,
        lock_state_machine,
        persistence_state_machine,
        queue_state_machine,
    )

_moved.install()

#: Names that moved to :mod:`wfe_core.testing.conformance`, still importable from here.
_CONFORMANCE_NAMES = frozenset(
    {
        "LifecycleSuite",
        "LockSuite",
        "PersistenceSuite",
        "QueueSuite",
        "SearchSuite",
        "lock_state_machine",
        "persistence_state_machine",
        "queue_state_machine",
    }
)


def __getattr__(name: str) -> Any:
    # Lazily, so importing the kit does not import every suite.
    if name in _CONFORMANCE_NAMES:
        return getattr(importlib.import_module("wfe_core.testing.conformance"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EngineHarness",
    "LifecycleSuite",
    "LockSuite",
    "ManualClock",
    "PersistenceSuite",
    "QueueSuite",
    "SearchSuite",
    "lock_state_machine",
    "persistence_state_machine",
    "queue_state_machine",
]
