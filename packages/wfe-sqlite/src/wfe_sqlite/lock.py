"""SQLite lock: leases with expiry and fencing tokens, shared by the processes using a file."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import anyio
import attrs

from wfe_core.providers import Lease, LeaseHolder, LockProvider, this_process
from wfe_core.providers import capabilities as cap
from wfe_sqlite import _leases as leases
from wfe_sqlite.base import SqliteProviderMixin
from wfe_sqlite.engine import driver, from_us, now_us

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["SqliteLock"]

_RENEW = (
    "UPDATE wfe_locks SET expires_at = :exp"
    " WHERE key = :key AND token = :token AND owner = :owner AND expires_at > :now"
)


def _holder(conn: Connection, *, key: str) -> int | None:
    """When the current lease of ``key`` expires (µs), None when there is none."""
    row = driver(conn).execute(leases.HELD, (key,)).fetchone()
    return None if row is None else int(row[1])


def _holder_of(conn: Connection, *, key: str) -> LeaseHolder | None:
    row = driver(conn).execute(leases.HELD, (key,)).fetchone()
    if row is None or int(row[1]) <= now_us():
        return None
    pid = None if row[3] is None else int(row[3])
    return LeaseHolder(owner=str(row[0]), expires_at=from_us(int(row[1])), host=row[2], pid=pid)


class SqliteLock(SqliteProviderMixin, LockProvider):
    """Leases kept in the SQLite file, so every process using the file is excluded.

    Expiry is a wall-clock deadline stored in the file (processes on one machine share the
    clock), so the lease of a process that crashed lapses after its ``ttl``. Each lease also
    records its holder's host name and process id: a key held by a process of this machine
    that no longer runs (killed with SIGKILL, crashed) is taken over at once, without
    waiting for its lease to lapse (see :func:`wfe_core.providers.holder_is_gone`). Fencing tokens
    come from one counter in the file and grow with every acquisition. A lease that has
    expired is no longer current: :meth:`renew` and :meth:`release` refuse it even when no
    other owner has taken the key yet.

    A waiting :meth:`acquire` wakes at once when the key is released in this process or the
    current lease expires; a release by another process is noticed by polling with a bounded
    backoff (``poll_interval`` to ``max_poll_interval``), where a poll costs microseconds
    unless something was committed since the last one.
    """

    capabilities = frozenset({cap.DURABLE, cap.DISTRIBUTED, cap.LEASE_RENEWAL})

    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Lease | None:
        """Take ``key`` for ``owner`` for ``ttl`` seconds, waiting up to ``wait`` seconds for
        it to become free. ``None`` when it stayed held (or ``owner`` already holds it)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        store = self.store
        options = store.options
        ttl_us = leases.ttl_us(ttl)
        deadline = anyio.current_time() + max(wait, 0.0)
        interval = options.poll_interval
        channel = leases.channel(key)
        try_now = True
        holder = this_process()
        # The database's data_version at the last look, and when the lease seen then expires.
        seen: int | None = None
        expires_at = 0
        while True:
            # Read before looking, so a commit made during the look shows at the next one
            # (not when there is no next look: the host's attempts do not wait).
            version = store.data_version() if wait > 0 else None
            if try_now:
                # Leases are not synced: a power failure that loses one also stopped every
                # process on the machine, so no holder relies on it any more.
                attempt = await store.write(
                    partial(leases.take, key=key, owner=owner, ttl_us=ttl_us, holder=holder),
                    "acquire",
                    durable=False,
                )
                leases.report_takeover(key, attempt)
                if attempt.token is not None:
                    return Lease(
                        key=key,
                        owner=owner,
                        token=attempt.token,
                        expires_at=from_us(attempt.expires_at),
                    )
                if attempt.owner == owner:
                    # Not re-entrant: waiting for one's own lease to lapse makes no sense.
                    return None
                seen, expires_at, try_now = version, attempt.expires_at, False
            elif version is None or version != seen:
                # Something was committed (maybe a release by another process): a cheap read,
                # without the write lock, tells whether the key may be free.
                held = await store.read(partial(_holder, key=key), "acquire")
                seen = version
                expires_at = 0 if held is None else held
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return None
            until_expiry = (expires_at - now_us()) / leases.SECOND
            if until_expiry <= 0:
                try_now = True
                continue
            if await store.wait(channel, min(interval, remaining, until_expiry)):
                interval = options.poll_interval
                try_now = True
            else:
                interval = min(interval * 2, options.max_poll_interval)

    async def holder(self, key: str) -> LeaseHolder | None:
        """The current holder of ``key`` (its host name and pid when it recorded them)."""
        return await self.store.read(partial(_holder_of, key=key), "holder")

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend the current ``lease`` to ``ttl`` seconds from now (same token)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        ttl_us = leases.ttl_us(ttl)

        def run(conn: Connection) -> int:
            now = now_us()
            expires = now + ttl_us
            params = {
                "key": lease.key,
                "token": lease.token,
                "owner": lease.owner,
                "now": now,
                "exp": expires,
            }
            if driver(conn).execute(_RENEW, params).rowcount == 0:
                raise leases.not_current(lease)
            return expires

        expires = await self.store.write(run, "renew", durable=False)
        return attrs.evolve(lease, expires_at=from_us(expires))

    async def release(self, lease: Lease) -> None:
        """Free the key of the current ``lease`` at once and wake its waiters."""

        store = self.store
        await store.write(partial(leases.release, lease=lease), "release", durable=False)
        store.notify(leases.channel(lease.key))
