"""Names of optional provider behaviours, declared in ``Provider.capabilities``.

Conformance tests that need one skip, naming it, when a provider does not declare it.
"""

from __future__ import annotations

#: ``QueueProvider.dequeue`` waits for an item instead of returning at once (no polling).
DEQUEUE_BLOCKS = "dequeue-blocks"
#: A dequeued item that is not acked within the visibility timeout is handed out again.
QUEUE_REDELIVERY = "queue-redelivery"
#: ``LockProvider.renew`` extends a lease.
LEASE_RENEWAL = "lease-renewal"
#: Locks are shared between processes (and machines), not only tasks of one process.
DISTRIBUTED = "distributed"
#: State survives a restart of the process.
DURABLE = "durable"
#: ``SearchIndex.search`` matches text inside workflow data.
SEARCH_BY_DATA = "search-by-data"
#: The provider's driver only runs under asyncio (not trio).
ASYNCIO_ONLY = "asyncio-only"
#: ``PersistenceProvider.persist_workflow`` refuses a ``fence`` older than the newest it has
#: accepted for the instance (:class:`~wfe_core.errors.StaleLeaseError`).
FENCING = "fencing"
