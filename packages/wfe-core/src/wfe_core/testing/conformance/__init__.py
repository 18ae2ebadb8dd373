"""The conformance suites provider authors run: one suite class per concern, Hypothesis state
machines comparing a provider with the reference model, end-to-end scenarios on a real host,
strategies for the models and helpers for starting real servers.

A provider package subclasses a suite in its tests, sets ``__test__ = True`` and supplies an
async fixture yielding an entered provider (``lock``, ``queue``, ``persistence``, ``search``
or ``lifecycle``); see ``docs/providers.md``. End-to-end workflow scenarios are in
:mod:`~wfe_core.testing.conformance.scenarios`, the model the persistence machine compares
with in :mod:`~wfe_core.testing.conformance.reference`, model strategies in
:mod:`~wfe_core.testing.conformance.strategies` and server helpers in
:mod:`~wfe_core.testing.conformance.servers`. Needs the ``testing`` extra
(``pip install wfe-core[testing]``: pytest, hypothesis).
"""

from __future__ import annotations

import pytest

# Before the suites are imported, so their plain ``assert``s report values like tests do.
pytest.register_assert_rewrite(
    "wfe_core.testing.conformance._peers",
    "wfe_core.testing.conformance._support",
    "wfe_core.testing.conformance.lifecycle",
    "wfe_core.testing.conformance.lock",
    "wfe_core.testing.conformance.persistence",
    "wfe_core.testing.conformance.queue",
    "wfe_core.testing.conformance.reference",
    "wfe_core.testing.conformance.scenarios",
    "wfe_core.testing.conformance.search",
)

from wfe_core.testing.conformance.lifecycle import LifecycleSuite  # noqa: E402
from wfe_core.testing.conformance.lock import LockSuite, lock_state_machine  # noqa: E402
from wfe_core.testing.conformance.persistence import (  # noqa: E402
    PersistenceSuite,
    persistence_state_machine,
)
from wfe_core.testing.conformance.queue import QueueSuite, queue_state_machine  # noqa: E402
from wfe_core.testing.conformance.search import SearchSuite  # noqa: E402

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
