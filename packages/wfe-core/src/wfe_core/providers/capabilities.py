"""Names of optional provider behaviours, declared in ``Provider.capabilities``.

:class:`Capability` is the typed set; the module-level names (``DEQUEUE_BLOCKS``, ...) are
aliases of its members, kept so ``from wfe_core.providers import capabilities as cap`` and
``cap.DURABLE`` go on working. Members are strings (a :class:`~enum.StrEnum`), so
``"durable" in provider.capabilities`` holds too. At the plugin boundary (a
:class:`~wfe_core.plugins.ProviderSpec`, a provider class's ``capabilities``) plain strings
are accepted and converted with :func:`parse_capabilities`; an unknown one is an error.

Conformance tests that need one skip, naming it, when a provider does not declare it.
"""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import TYPE_CHECKING

from wfe_core.errors import ProviderContractError

if TYPE_CHECKING:
    from collections.abc import Iterable


class Capability(StrEnum):
    """An optional behaviour a provider declares; the host and the suites adapt to it."""

    #: ``QueueProvider.dequeue`` waits for an item instead of returning at once (no polling).
    DEQUEUE_BLOCKS = "dequeue-blocks"
    #: A dequeued item that is not acked within the visibility timeout is handed out again.
    QUEUE_REDELIVERY = "queue-redelivery"
    #: ``LockProvider.renew`` extends a lease.
    LEASE_RENEWAL = "lease-renewal"
    #: Locks and queues are shared between processes (and machines), not only tasks of one
    #: process.
    DISTRIBUTED = "distributed"
    #: State survives a restart of the process.
    DURABLE = "durable"
    #: ``SearchIndex.search`` matches text inside workflow data.
    SEARCH_BY_DATA = "search-by-data"
    #: The provider's driver only runs under asyncio (not trio).
    ASYNCIO_ONLY = "asyncio-only"
    #: ``PersistenceProvider.persist_workflow`` refuses a write whose ``fence`` (the writer's
    #: ``Lease.token``) is older than the newest it accepted for that instance
    #: (:class:`~wfe_core.errors.StaleLeaseError`).
    FENCING = "fencing"
    #: ``PersistenceProvider`` lists open subscriptions by event name and lets external
    #: workers claim them (``get_open_subscriptions``, ``claim_subscription``,
    #: ``release_subscription_claim``): what activities and user tasks need.
    EXTERNAL_WORK = "external-work"
    #: Each operation is a round trip to a server over the network (not a call into this
    #: process or a local file): the host makes independent operations side by side.
    REMOTE = "remote"
    #: ``PersistenceProvider`` takes a new instance's lease in the write that creates it
    #: (``create_workflow(lease=)``) and gives a lease back in a write
    #: (``persist_workflow(release=)``), in the write's own transaction, for the lock
    #: provider it keeps its leases with (``shares_leases_with(lock)``): a pass of a host on
    #: both saves the transactions of taking and releasing its lease.
    LEASED_WRITES = "leased-writes"


def parse_capabilities(values: Iterable[Capability | str], *, where: str) -> frozenset[Capability]:
    """``values`` as :class:`Capability` members.

    ``where`` says who declared them (``"provider class pkg.Queue"``) for the error an
    unknown name raises: :class:`~wfe_core.errors.ProviderContractError`, listing the known
    names and the closest one.
    """
    if isinstance(values, str):
        # A lone string would be read letter by letter.
        raise ProviderContractError(
            f"{where}: capabilities must be a set of names, got the string {values!r}"
        )
    parsed: set[Capability] = set()
    for value in values:
        try:
            parsed.add(Capability(value))
        except ValueError:
            known = [c.value for c in Capability]
            close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ProviderContractError(
                f"{where}: unknown capability {value!r}{hint} (known: {', '.join(known)})"
            ) from None
    return frozenset(parsed)


#: Aliases of the :class:`Capability` members, for ``cap.NAME`` spellings.
DEQUEUE_BLOCKS = Capability.DEQUEUE_BLOCKS
QUEUE_REDELIVERY = Capability.QUEUE_REDELIVERY
LEASE_RENEWAL = Capability.LEASE_RENEWAL
DISTRIBUTED = Capability.DISTRIBUTED
DURABLE = Capability.DURABLE
SEARCH_BY_DATA = Capability.SEARCH_BY_DATA
ASYNCIO_ONLY = Capability.ASYNCIO_ONLY
FENCING = Capability.FENCING
EXTERNAL_WORK = Capability.EXTERNAL_WORK
REMOTE = Capability.REMOTE
LEASED_WRITES = Capability.LEASED_WRITES

__all__ = [
    "ASYNCIO_ONLY",
    "DEQUEUE_BLOCKS",
    "DISTRIBUTED",
    "DURABLE",
    "EXTERNAL_WORK",
    "FENCING",
    "LEASED_WRITES",
    "LEASE_RENEWAL",
    "QUEUE_REDELIVERY",
    "REMOTE",
    "SEARCH_BY_DATA",
    "Capability",
    "parse_capabilities",
]
