"""In-memory lock: leases with expiry and fencing tokens, between tasks of one process."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import attrs
from anyio.lowlevel import checkpoint

from wfe_core.clock import SYSTEM_CLOCK
from wfe_core.errors import LockNotHeldError
from wfe_core.providers import capabilities as cap
from wfe_core.providers._liveness import this_process
from wfe_core.providers._lock import Lease, LeaseHolder, LockProvider

if TYPE_CHECKING:
    from wfe_core.clock import Clock

__all__ = ["MemoryLock"]


@attrs.define
class _Held:
    owner: str
    token: int
    #: On the event loop's monotonic clock (``anyio.current_time()``), immune to wall-clock
    #: jumps; the lease's ``expires_at`` is only informative.
    deadline: float


class MemoryLock(LockProvider):
    """Leases over named keys, shared by the tasks of one event loop.

    Expiry is measured on the event loop's monotonic clock. A waiting :meth:`acquire` sleeps
    until the key is released or the current lease's expiry, whichever comes first (no polling).
    A lease that has expired is no longer the current one: :meth:`renew` and :meth:`release`
    refuse it even when no other owner has taken the key yet. ``clock`` gives the leases'
    ``expires_at`` (informative only).

    Fencing tokens start above the wall-clock time in microseconds when the lock was made, so
    the tokens of a lock made after a restart are higher than any the previous process
    issued (a durable store may hold them as fences): a key would have to be taken more than
    once per microsecond to catch up, or the clock set back.
    """

    capabilities = frozenset({cap.LEASE_RENEWAL})

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._held: dict[str, _Held] = {}
        # Fencing tokens keep growing per key even after a key is released and forgotten.
        self._tokens: dict[str, int] = {}
        self._first_token = int(clock.now().timestamp() * 1_000_000)
        # One event per waiting acquire, set on release. Each waiter creates its own (anyio
        # events need a running loop) and removes it when it leaves, so no event outlives its
        # event loop (a provider may serve several ``anyio.run`` calls one after another).
        self._waiters: dict[str, set[anyio.Event]] = {}

    def _current(self, key: str, now: float) -> _Held | None:
        held = self._held.get(key)
        if held is not None and held.deadline <= now:
            # Expired: forget it so the key is free.
            del self._held[key]
            return None
        return held

    def _grant(self, key: str, owner: str, ttl: float, now: float) -> Lease:
        token = self._tokens.get(key, self._first_token) + 1
        self._tokens[key] = token
        self._held[key] = _Held(owner, token, now + ttl)
        return Lease(key=key, owner=owner, token=token, expires_at=_wall(self._clock, ttl))

    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Lease | None:
        """Take ``key`` for ``owner`` for ``ttl`` seconds, waiting up to ``wait`` seconds for
        it to become free. ``None`` when it stayed held (or ``owner`` already holds it)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        await checkpoint()
        deadline = anyio.current_time() + max(wait, 0.0)
        while True:
            now = anyio.current_time()
            held = self._current(key, now)
            if held is None:
                return self._grant(key, owner, ttl, now)
            if held.owner == owner or now >= deadline:
                # Not re-entrant: waiting for one's own lease to lapse makes no sense.
                return None
            released = anyio.Event()
            waiters = self._waiters.setdefault(key, set())
            waiters.add(released)
            try:
                # Wake on release, or when the current lease lapses, or at the caller's deadline.
                with anyio.move_on_after(min(deadline, held.deadline) - now):
                    await released.wait()
            finally:
                waiters.discard(released)
                if not waiters and self._waiters.get(key) is waiters:
                    del self._waiters[key]

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend the current ``lease`` to ``ttl`` seconds from now (same token)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        await checkpoint()
        now = anyio.current_time()
        held = self._check(lease, now)
        held.deadline = now + ttl
        return attrs.evolve(lease, expires_at=_wall(self._clock, ttl))

    async def release(self, lease: Lease) -> None:
        """Free the key of the current ``lease`` at once and wake its waiters."""
        await checkpoint()
        self._check(lease, anyio.current_time())
        del self._held[lease.key]
        for waiter in self._waiters.pop(lease.key, ()):
            waiter.set()

    async def holder(self, key: str) -> LeaseHolder | None:
        """The current holder of ``key`` (always this process)."""
        now = anyio.current_time()
        held = self._current(key, now)
        if held is None:
            return None
        host, pid = this_process()
        expires = _wall(self._clock, held.deadline - now)
        return LeaseHolder(owner=held.owner, expires_at=expires, host=host, pid=pid)

    def _check(self, lease: Lease, now: float) -> _Held:
        held = self._current(lease.key, now)
        if held is None or held.token != lease.token or held.owner != lease.owner:
            raise LockNotHeldError(
                f"lease {lease.token} of {lease.key!r} by {lease.owner!r} is not current"
            )
        return held


def _wall(clock: Clock, ttl: float) -> datetime:
    """The time ``ttl`` seconds from ``clock``'s now, for :attr:`Lease.expires_at`."""
    return clock.now() + timedelta(seconds=ttl)
