"""What the host does differently depending on its providers, decided once as it opens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from wfe_core.providers import capabilities

if TYPE_CHECKING:
    from wfe_core.providers import LifecyclePublisher, LockProvider, PersistenceProvider


@attrs.frozen
class HostPolicy:
    """The host's behaviour derived from its providers' capabilities (see :meth:`of`)."""

    #: The store may be shared with other processes (``durable``): they may finish workflows
    #: and schedule work this host is not told about, so waiters and the scheduler look
    #: again now and then, and a finishing pass hands its waiters a copy of what it stored.
    shared_store: bool
    #: The lifecycle publisher carries other processes' events (``distributed``): the host
    #: watches it for finished workflows and keeps a waiter table of its own.
    distributed_lifecycle: bool
    #: The persistence keeps the lock's leases in its own database (``leased-writes``, and
    #: ``shares_leases_with(lock)``): a pass's lease is taken by the write creating a new
    #: instance and given back by the pass's last write, not in transactions of their own.
    leased_writes: bool = False

    @classmethod
    def of(
        cls, persistence: PersistenceProvider, lock: LockProvider, lifecycle: LifecyclePublisher
    ) -> HostPolicy:
        """The policy for a host on these (open) providers."""
        stored = type(persistence).capabilities
        return cls(
            shared_store=capabilities.DURABLE in stored,
            distributed_lifecycle=capabilities.DISTRIBUTED in type(lifecycle).capabilities,
            leased_writes=capabilities.LEASED_WRITES in stored
            and persistence.shares_leases_with(lock),
        )
