"""The distributed lock contract: leases with expiry and fencing tokens."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime

import attrs

from wfe_core.providers._base import Provider


@attrs.frozen
class Lease:
    """Proof that the holder owns ``key`` until ``expires_at``.

    ``token`` is a fencing token: it grows every time any holder acquires ``key``, so a stale
    holder (whose lease expired and was taken by another) can be told apart from the current one.
    """

    key: str
    owner: str
    token: int
    expires_at: datetime


@attrs.frozen
class LeaseRequest:
    """A lease to take in a persistence write (``PersistenceProvider.create_workflow(...,
    lease=)``, capability ``leased-writes``): ``owner`` takes the new instance's id as key for
    ``ttl`` seconds, as :meth:`LockProvider.acquire` would."""

    owner: str
    ttl: float


@attrs.frozen
class LeaseHolder:
    """What a lock knows of the current holder of a key (see :meth:`LockProvider.holder`)."""

    owner: str
    #: When the lease lapses unless renewed.
    expires_at: datetime
    #: The host name and process id of the holder, where the lock records them.
    host: str | None = None
    pid: int | None = None


class LockProvider(Provider):
    """Mutual exclusion between workers over named keys (a workflow id, an event id, ...).

    Guarantees every implementation must keep (checked by ``wfe_core.testing.LockSuite``):

    * at most one unexpired lease exists per key at any time;
    * a lease expires ``ttl`` seconds after it was acquired or last renewed, after which another
      owner can acquire the key (so a crashed holder never blocks it for ever);
    * :meth:`release` and :meth:`renew` refuse (:class:`~wfe_core.errors.LockNotHeldError`) a
      lease that is not the key's current one, so a stale holder cannot free another's lease.

    A lock kept in the same database as the persistence (wfe-sqlite's on one file,
    wfe-postgres's on one database) may have its leases taken and released by the
    persistence's own writes (capability ``leased-writes``, see
    :meth:`PersistenceProvider.shares_leases_with
    <wfe_core.providers.PersistenceProvider.shares_leases_with>`): such a lease is a lease of
    this lock like any other (renewed, released and refused here as any other), and one the
    persistence released is gone here too.
    """

    @abstractmethod
    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Lease | None:
        """Take ``key`` for ``owner`` for ``ttl`` seconds.

        Waits up to ``wait`` seconds for a held key to become free; returns ``None`` when it did
        not. Acquiring a key the same owner already holds also returns ``None`` (locks are not
        re-entrant).
        """

    @abstractmethod
    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend ``lease`` to ``ttl`` seconds from now and return the renewed lease.

        Raises :class:`~wfe_core.errors.LockNotHeldError` when the lease is no longer current.
        """

    @abstractmethod
    async def release(self, lease: Lease) -> None:
        """Give ``lease`` back so the key is free at once.

        Raises :class:`~wfe_core.errors.LockNotHeldError` when the lease is not current
        (already released, expired and taken by another owner, or never issued).
        """

    async def holder(self, key: str) -> LeaseHolder | None:
        """The current holder of ``key``, ``None`` when it is free or the lock cannot say
        (the default). For messages only (who is waited for, and until when): never use it
        to decide whether to take a key; :meth:`acquire` decides."""
        return None
