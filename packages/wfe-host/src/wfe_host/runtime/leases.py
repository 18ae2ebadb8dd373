"""Keeping the leases of running passes, and never writing under one that may have lapsed.

A pass holds a lease on its instance; every write it makes carries the lease's fencing token
(``persist_workflow(fence=...)``), and a store with the ``fencing`` capability refuses a token
older than one it accepted. Two things keep a pass from writing under a lost lease:

* :class:`LeaseRenewer`, one task for all the passes of a host, renews their leases in time
  and stops (cancels) a pass whose lease the lock refused to renew.
* :func:`ensure_current`, called before each write of a pass. The renewer runs on the event
  loop, so a step that blocks the loop (CPU-bound or blocking code in an ``async`` step)
  starves it: by the time the loop runs again the lease may have lapsed and another host may
  be running the instance. Before writing, a lease older than half its time (the renewer
  would have renewed it by then) is renewed first; when the lock refuses, the write is not
  made (:class:`~wfe_core.errors.LockNotHeldError`) and the pass stops. So a blocked loop
  shorter than the lease costs one renewal, and a longer one loses the pass's work since its
  last write, never the instance's state.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import anyio

from wfe_core.errors import LockNotHeldError, WfeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from wfe_core.providers import Lease, LockProvider

__all__ = ["LeaseRenewer", "LeasedWork", "ensure_current"]

logger = logging.getLogger("wfe_host.passes")

#: A lease older than this share of its time is renewed before a write (the renewer renews
#: one older than a third of it every sixth, so it is never this old while the loop runs).
RENEW_BEFORE_WRITE = 0.5


class LeasedWork(Protocol):
    """What the renewer and :func:`ensure_current` need of a pass (a ``PassHandle``)."""

    workflow_id: str
    #: The lease held (the renewed one once renewed); ``None`` before it is taken.
    lease: Lease | None
    #: When (anyio's clock) the lease was taken or last renewed: measured before the request
    #: was sent, so the lease lapses no sooner than ``leased_at + ttl`` on the lock's side.
    leased_at: float


async def _renew(lock: LockProvider, work: LeasedWork, lease: Lease, ttl: float) -> Lease:
    """Renew ``lease`` of ``work`` and record it there (unless another renewal replaced the
    lease meanwhile). Raises what the lock raises."""
    renewed_at = anyio.current_time()
    renewed = await lock.renew(lease, ttl=ttl)
    if work.lease is lease:
        work.lease = renewed
        work.leased_at = renewed_at
    return renewed


async def ensure_current(lock: LockProvider, work: LeasedWork, ttl: float) -> int:
    """The fencing token to write under, after making sure ``work``'s lease has not lapsed
    while the event loop was blocked (see the module docstring).

    Raises :class:`~wfe_core.errors.LockNotHeldError` when the lease is gone: then the caller
    must not write."""
    lease = work.lease
    if lease is None:
        raise LockNotHeldError(f"workflow {work.workflow_id}: the pass holds no lease")
    age = anyio.current_time() - work.leased_at
    if age < ttl * RENEW_BEFORE_WRITE:
        return lease.token
    try:
        renewed = await _renew(lock, work, lease, ttl)
    except LockNotHeldError as exc:
        raise LockNotHeldError(
            f"workflow {work.workflow_id}: the lease lapsed ({age:.1f} s since it was last "
            f"renewed, for a lease of {ttl:g} s; was the event loop blocked?)"
        ) from exc
    logger.info(
        "renewed a lease %.1f s old before writing (the event loop was blocked)",
        age,
        extra={"workflow_id": work.workflow_id},
    )
    return renewed.token


W = TypeVar("W", bound=LeasedWork)


class LeaseRenewer(Generic[W]):
    """Keeps alive the leases of the passes ``running()`` lists; ``lost(work)`` is called for
    one whose lease the lock refused to renew (while it still holds that lease)."""

    def __init__(
        self,
        lock: LockProvider,
        ttl: float,
        running: Callable[[], Iterable[W]],
        lost: Callable[[W], None],
    ) -> None:
        self._lock = lock
        self._ttl = ttl
        self._running = running
        self._lost = lost

    async def run(self) -> None:
        """Run while the workers do.

        One task for every pass (not one each, which would cost every pass a task group and
        a timer): it looks every sixth of the lease time and renews each lease older than a
        third of it, so a lease is renewed by half its time at the latest (while the event
        loop is not blocked; see :func:`ensure_current` for when it is).
        """
        ttl = self._ttl
        while True:
            await anyio.sleep(ttl / 6)
            now = anyio.current_time()
            due = [w for w in self._running() if w.lease and now - w.leased_at >= ttl / 3]
            if due:
                async with anyio.create_task_group() as tg:
                    for work in due:
                        tg.start_soon(self._renew_one, work)

    async def _renew_one(self, work: W) -> None:
        lease = work.lease
        assert lease is not None
        try:
            await _renew(self._lock, work, lease, self._ttl)
        except WfeError:  # LockNotHeldError, or the lock provider failed
            if work.lease is lease:
                self._lost(work)
