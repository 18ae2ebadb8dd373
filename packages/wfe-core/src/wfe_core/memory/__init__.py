"""In-memory providers of every kind (named ``memory``): product code for tests, scripts and
single-process hosts. The conformance suites check them against a reference model
(:mod:`wfe_core.testing.conformance.reference`) like every other provider."""

from __future__ import annotations

from wfe_core.memory.lifecycle import LifecycleSubscription, MemoryLifecycle
from wfe_core.memory.lock import MemoryLock
from wfe_core.memory.persistence import MemoryPersistence
from wfe_core.memory.queue import MemoryQueue
from wfe_core.memory.search import MemorySearch

__all__ = [
    "LifecycleSubscription",
    "MemoryLifecycle",
    "MemoryLock",
    "MemoryPersistence",
    "MemoryQueue",
    "MemorySearch",
]
