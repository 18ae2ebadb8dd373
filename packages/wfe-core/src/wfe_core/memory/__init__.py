"""In-memory providers of every kind (named ``memory``): product code for tests, scripts and
single-process hosts. The conformance suites check them against a reference model
(:mod:`wfe_core.testing.conformance.reference`) like every other provider."""

from __future__ import annotations

from wfe_core.memory._lifecycle import LifecycleSubscription, MemoryLifecycle
from wfe_core.memory._lock import MemoryLock
from wfe_core.memory._persistence import MemoryPersistence
from wfe_core.memory._queue import MemoryQueue
from wfe_core.memory._search import MemorySearch
from wfe_core.memory._snapshot import InstanceSnapshot, json_copy

__all__ = [
    "InstanceSnapshot",
    "LifecycleSubscription",
    "MemoryLifecycle",
    "MemoryLock",
    "MemoryPersistence",
    "MemoryQueue",
    "MemorySearch",
    "json_copy",
]
