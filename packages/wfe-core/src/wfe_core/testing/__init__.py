"""Conformance suites every WFE provider runs, and Hypothesis strategies for the models.

A provider package subclasses a suite in its tests, sets ``__test__ = True`` and supplies an
async fixture yielding an entered provider (``lock``, ``queue``, ``persistence``, ``search``
or ``lifecycle``); see ``docs/providers.md``. End-to-end workflow scenarios on a real host
are in :mod:`wfe_core.testing.scenarios`, model strategies in :mod:`wfe_core.testing.strategies`
and helpers for starting real servers in :mod:`wfe_core.testing.servers`. Needs the
``testing`` extra (``pip install wfe-core[testing]``: pytest, hypothesis).
"""

from __future__ import annotations

import pytest

# Before the suites are imported, so their plain ``assert``s report values like tests do.
pytest.register_assert_rewrite(
    "wfe_core.testing._support",
    "wfe_core.testing.definitions",
    "wfe_core.testing.harness",
    "wfe_core.testing.lifecycle",
    "wfe_core.testing.lock",
    "wfe_core.testing.persistence",
    "wfe_core.testing.queue",
    "wfe_core.testing.scenarios",
    "wfe_core.testing.search",
)

from wfe_core.testing.lifecycle import LifecycleSuite  # noqa: E402
from wfe_core.testing.lock import LockSuite, lock_state_machine  # noqa: E402
from wfe_core.testing.persistence import PersistenceSuite, persistence_state_machine  # noqa: E402
from wfe_core.testing.queue import QueueSuite, queue_state_machine  # noqa: E402
from wfe_core.testing.search import SearchSuite  # noqa: E402

__all__ = [
    "LifecycleSuite",
    "LockSuite",
    "PersistenceSuite",
    "QueueSuite",
    "SearchSuite",
    "lock_state_machine",
    "persistence_state_machine",
    "queue_state_machine",
]
