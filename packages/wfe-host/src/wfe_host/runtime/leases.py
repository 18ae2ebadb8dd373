"""Keeping the leases of running passes, and never writing under one that may have lapsed.

A pass holds a lease on its instance; every write it makes carries the lease's fencing token
(``persist_workflow(fence=...)``), and a store with the ``fencing`` capability refuses a token
older than one it accepted. Two things keep a pass from writing under a lost lease:

* :class:`LeaseRenewer`, one task for all the passes of a host, renews their leases in time
  and reports (``lost``) a pass whose lease is gone, so the host stops it.
* :func:`ensure_current`, called before each write of a pass. The renewer runs on the event
  loop, so a step that blocks the loop (CPU-bound or blocking code in an ``async`` step)
  starves it: by the time the loop runs again the lease may have lapsed and another host may
  be running the instance. Before writing, a lease older than half its time (the renewer
  would have renewed it by then) is renewed first, or taken again if it lapsed and nobody
  took it; when another worker holds it, the write is not made
  (:class:`~wfe_core.errors.LockNotHeldError`) and the pass stops. So a blocked loop costs
  one renewal when nobody took the instance over, and otherwise the pass's work since its
  last write (the step runs again), never the instance's state.

Taking a lapsed lease again is safe: a new lease has a higher token, and whoever held the
instance in between either wrote it (then this pass's copy is older than the stored one, and
the revision check refuses the write) or did not (then nothing was lost).

Why not renew from a thread of its own: lock providers belong to the event loop they were
opened in (drivers' connections, the memory lock's clock), so a renewal thread would need a
second provider, with its own connection, per host; checking before each write works with
every provider as it is, and costs one clock reading per write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import anyio

from wfe_core.errors import LockNotHeldError, WfeError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from wfe_core.providers import Lease, LockProvider

__all__ = [
    "LeaseRenewer",
    "LeasedWork",
    "RenewalRecorder",
    "ensure_current",
    "fresh_token",
    "loop_clock",
]

logger = logging.getLogger("wfe_host.passes")

#: A lease older than this share of its time is renewed before a write (the renewer renews
#: one older than a third of it every sixth, so it is never this old while the loop runs).
RENEW_BEFORE_WRITE = 0.5
#: The renewer renews leases older than this share of their time.
RENEW_AFTER = 1 / 3


class LeasedWork(Protocol):
    """What the renewer and :func:`ensure_current` need of a pass (a ``PassHandle``)."""

    workflow_id: str
    #: The lease held (the renewed one once renewed); ``None`` before it is taken, and once
    #: it was found lost.
    lease: Lease | None
    #: When (anyio's clock) the lease was taken or last renewed: measured before the request
    #: was sent, so the lease lapses no sooner than ``leased_at + ttl`` on the lock's side.
    leased_at: float
    #: Held while the lease is renewed or taken again, so the renewer and a write never do
    #: it at once (both would take it again: one would get it, the other would think it lost).
    lease_guard: anyio.Lock


class RenewalRecorder(Protocol):
    """Told of every renewal attempt (the host's telemetry counts them)."""

    def lease_renewal(self, outcome: str) -> None:
        """``outcome``: ``renewed``, ``reacquired``, ``lost`` or ``failed``."""


class _Lost(Exception):
    """The lease is gone and another worker holds the key (raised once per lease)."""


async def _keep(
    lock: LockProvider,
    work: LeasedWork,
    ttl: float,
    older_than: float,
    renewals: RenewalRecorder | None,
) -> Lease:
    """``work``'s lease, renewed when it is older than ``older_than`` seconds, or taken again
    when the lock no longer knows it and nobody else took the key. Raises :class:`_Lost` to
    the one caller that finds it lost (it is ``None`` from then on), ``LockNotHeldError`` to
    any later one, and whatever the lock raises when it fails. ``renewals`` is told the
    outcome of each renewal tried."""
    async with work.lease_guard:
        lease = work.lease
        if lease is None:
            raise LockNotHeldError(f"workflow {work.workflow_id}: the pass holds no lease")
        asked_at = anyio.current_time()
        if asked_at - work.leased_at < older_than:
            return lease  # renewed meanwhile
        outcome: str | None = "failed"
        try:
            try:
                kept = await lock.renew(lease, ttl=ttl)
                outcome = "renewed"
            except LockNotHeldError:
                again = await lock.acquire(lease.key, owner=lease.owner, ttl=ttl)
                if again is None:
                    outcome = "lost"
                    work.lease = None
                    raise _Lost from None
                outcome = "reacquired"
                logger.info(
                    "took a lapsed lease again (%.1f s old: was the event loop blocked?)",
                    asked_at - work.leased_at,
                    extra={"workflow_id": work.workflow_id},
                )
                kept = again
        except BaseException as exc:
            if not isinstance(exc, Exception):
                outcome = None  # cancelled: neither done nor failed
            raise
        finally:
            if renewals is not None and outcome is not None:
                renewals.lease_renewal(outcome)
        work.lease, work.leased_at = kept, asked_at
        return kept


def loop_clock() -> Callable[[], float]:
    """The clock ``anyio.current_time()`` reads, to call directly: on asyncio the running
    loop's ``time`` (what anyio returns), without anyio's look-up of the backend on every
    reading (a pass reads it before each write: a loop's round is one write)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio)
        return anyio.current_time
    return loop.time


def fresh_token(work: LeasedWork, ttl: float, now: float) -> int | None:
    """``work``'s fencing token when its lease is young enough at ``now`` (anyio's clock) to
    write under without renewing it; ``None`` when :func:`ensure_current` must look."""
    lease = work.lease
    if lease is not None and now - work.leased_at < ttl * RENEW_BEFORE_WRITE:
        return lease.token
    return None


async def ensure_current(
    lock: LockProvider,
    work: LeasedWork,
    ttl: float,
    *,
    renewals: RenewalRecorder | None = None,
) -> int:
    """The fencing token to write under, after making sure ``work``'s lease has not lapsed
    while the event loop was blocked (see the module docstring). ``renewals`` is told of a
    renewal this makes.

    Raises :class:`~wfe_core.errors.LockNotHeldError` when another worker holds the lease
    now: then the caller must not write."""
    now = anyio.current_time()
    token = fresh_token(work, ttl, now)
    if token is not None:
        return token
    age = 0.0 if work.lease is None else now - work.leased_at
    try:
        return (await _keep(lock, work, ttl, ttl * RENEW_BEFORE_WRITE, renewals)).token
    except _Lost:
        raise LockNotHeldError(
            f"workflow {work.workflow_id}: the lease lapsed ({age:.1f} s since it was last "
            f"renewed, for a lease of {ttl:g} s; was the event loop blocked?) and another "
            "worker holds it now"
        ) from None


W = TypeVar("W", bound=LeasedWork)


class LeaseRenewer(Generic[W]):
    """Keeps alive the leases of the passes ``running()`` lists; ``lost(work)`` is called for
    one whose lease is gone (once per lease); ``renewals`` is told of each renewal."""

    def __init__(
        self,
        lock: LockProvider,
        ttl: float,
        running: Callable[[], Iterable[W]],
        lost: Callable[[W], None],
        *,
        renewals: RenewalRecorder | None = None,
    ) -> None:
        self._lock = lock
        self._ttl = ttl
        self._running = running
        self._lost = lost
        self._renewals = renewals

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
            due = [w for w in self._running() if w.lease and now - w.leased_at >= ttl * RENEW_AFTER]
            if due:
                async with anyio.create_task_group() as tg:
                    for work in due:
                        tg.start_soon(self._renew_one, work)

    async def _renew_one(self, work: W) -> None:
        try:
            await _keep(self._lock, work, self._ttl, self._ttl * RENEW_AFTER, self._renewals)
        except _Lost:
            self._lost(work)
        except LockNotHeldError:
            pass  # found lost by the pass's own write, which stops it
        except WfeError:
            # The lock failed: the lease may lapse before it answers again.
            self._lost(work)
