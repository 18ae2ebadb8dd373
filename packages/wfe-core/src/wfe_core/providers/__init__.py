"""Provider contracts: the ABCs every persistence, lock, queue, search and lifecycle provider
implements, and the step-executor contract behind YAML step types.

Import them from this package (and capabilities from
:mod:`wfe_core.providers.capabilities`): its other submodules are internal."""

from __future__ import annotations

from wfe_core.providers import capabilities
from wfe_core.providers._base import Provider
from wfe_core.providers._lifecycle import LifecyclePublisher
from wfe_core.providers._liveness import holder_is_gone, this_process
from wfe_core.providers._lock import Lease, LeaseHolder, LeaseRequest, LockProvider
from wfe_core.providers._persistence import LivePart, PersistenceProvider, PointerWrite
from wfe_core.providers._queue import QueueMessage, QueueName, QueueProvider
from wfe_core.providers._schema import SchemaOwner, SchemaStatus
from wfe_core.providers._search import SearchIndex
from wfe_core.providers._step_executor import StepExecutor
from wfe_core.providers.capabilities import Capability

__all__ = [
    "Capability",
    "Lease",
    "LeaseHolder",
    "LeaseRequest",
    "LifecyclePublisher",
    "LivePart",
    "LockProvider",
    "PersistenceProvider",
    "PointerWrite",
    "Provider",
    "QueueMessage",
    "QueueName",
    "QueueProvider",
    "SchemaOwner",
    "SchemaStatus",
    "SearchIndex",
    "StepExecutor",
    "capabilities",
    "holder_is_gone",
    "this_process",
]
