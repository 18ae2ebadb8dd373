"""SQLite lock: leases with expiry and fencing tokens, shared by the processes using a file."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import anyio
import attrs

from wfe_core.errors import LockNotHeldError
from wfe_core.providers import Lease, LeaseHolder, LockProvider, holder_is_gone, this_process
from wfe_core.providers import capabilities as cap
from wfe_sqlite.base import SqliteProviderMixin
from wfe_sqlite.engine import driver, from_us, now_us

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["SqliteLock"]

logger = logging.getLogger(__name__)

_SECOND = 1_000_000

# The statements are plain SQL run on the driver's connection (see wfe_sqlite.engine.driver):
# every workflow pass takes and frees a lease.
_HELD = "SELECT owner, expires_at, holder_host, holder_pid, token FROM wfe_locks WHERE key = ?"
# Take the key when it is free or its lease has expired (the row of an expired lease stays
# until the key is taken again), with the token after the counter's value; the counter is
# moved on only when the key was taken, so tokens stay consecutive. One counter for all keys
# in one write transaction: tokens grow with every acquisition.
_TAKE = (
    "INSERT INTO wfe_locks (key, owner, token, expires_at, holder_host, holder_pid)"
    " VALUES (?, ?, (SELECT value + 1 FROM wfe_lock_tokens WHERE id = 1), ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token,"
    " expires_at = excluded.expires_at, holder_host = excluded.holder_host,"
    " holder_pid = excluded.holder_pid WHERE wfe_locks.expires_at <= ?"
    " RETURNING token"
)
# Ends the lease of a holder found gone (see _acquire), so the key can be taken now.
_BREAK = "UPDATE wfe_locks SET expires_at = 0 WHERE key = ? AND token = ?"
_COUNT_TOKEN = "UPDATE wfe_lock_tokens SET value = ? WHERE id = 1"
_RENEW = (
    "UPDATE wfe_locks SET expires_at = :exp"
    " WHERE key = :key AND token = :token AND owner = :owner AND expires_at > :now"
)
_RELEASE = (
    "DELETE FROM wfe_locks"
    " WHERE key = :key AND token = :token AND owner = :owner AND expires_at > :now"
)


class _Attempt(NamedTuple):
    #: The new lease's token, or None when the key is held.
    token: int | None
    #: The new lease's expiry, or the current holder's (µs since the epoch).
    expires_at: int
    #: The owner of the lease (the new one, or the current holder).
    owner: str
    #: The holder whose lease was broken to take the key: its owner, host and pid.
    broke: tuple[str, str, int] | None = None


def _acquire(
    conn: Connection, *, key: str, owner: str, ttl_us: int, holder: tuple[str, int]
) -> _Attempt:
    raw = driver(conn)
    now = now_us()
    expires = now + ttl_us
    host, pid = holder
    taken = raw.execute(_TAKE, (key, owner, expires, host, pid, now)).fetchone()
    if taken is not None:
        token = int(taken[0])
        raw.execute(_COUNT_TOKEN, (token,))
        return _Attempt(token, expires, owner)
    # Held (by someone else, or by this owner) until a moment after now.
    held = raw.execute(_HELD, (key,)).fetchone()
    held_owner, held_host, held_pid = str(held[0]), held[2], held[3]
    if holder_is_gone(held_host, held_pid):
        # Its process was killed without releasing it (the write transaction holds the
        # file: nobody else takes or renews the lease meanwhile).
        raw.execute(_BREAK, (key, held[4]))
        taken = raw.execute(_TAKE, (key, owner, expires, host, pid, now)).fetchone()
        token = int(taken[0])
        raw.execute(_COUNT_TOKEN, (token,))
        return _Attempt(token, expires, owner, broke=(held_owner, held_host, int(held_pid)))
    return _Attempt(None, int(held[1]), held_owner)


def _holder(conn: Connection, *, key: str) -> int | None:
    """When the current lease of ``key`` expires (µs), None when there is none."""
    row = driver(conn).execute(_HELD, (key,)).fetchone()
    return None if row is None else int(row[1])


def _holder_of(conn: Connection, *, key: str) -> LeaseHolder | None:
    row = driver(conn).execute(_HELD, (key,)).fetchone()
    if row is None or int(row[1]) <= now_us():
        return None
    pid = None if row[3] is None else int(row[3])
    return LeaseHolder(owner=str(row[0]), expires_at=from_us(int(row[1])), host=row[2], pid=pid)


def _channel(key: str) -> str:
    return f"lock:{key}"


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
        ttl_us = max(int(ttl * _SECOND), 1)
        deadline = anyio.current_time() + max(wait, 0.0)
        interval = options.poll_interval
        channel = _channel(key)
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
                    partial(_acquire, key=key, owner=owner, ttl_us=ttl_us, holder=holder),
                    "acquire",
                    durable=False,
                )
                if attempt.broke is not None:
                    gone, on, pid = attempt.broke
                    # A warning: a process died holding work (killed, crashed).
                    logger.warning(
                        "took over the lease of %r from %s: its process %d on %s no longer runs",
                        key,
                        gone,
                        pid,
                        on,
                    )
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
            until_expiry = (expires_at - now_us()) / _SECOND
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
        ttl_us = max(int(ttl * _SECOND), 1)

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
                raise _not_current(lease)
            return expires

        expires = await self.store.write(run, "renew", durable=False)
        return attrs.evolve(lease, expires_at=from_us(expires))

    async def release(self, lease: Lease) -> None:
        """Free the key of the current ``lease`` at once and wake its waiters."""

        def run(conn: Connection) -> None:
            params = {"key": lease.key, "token": lease.token, "owner": lease.owner, "now": now_us()}
            if driver(conn).execute(_RELEASE, params).rowcount == 0:
                raise _not_current(lease)

        store = self.store
        await store.write(run, "release", durable=False)
        store.notify(_channel(lease.key))


def _not_current(lease: Lease) -> LockNotHeldError:
    return LockNotHeldError(
        f"lease {lease.token} of {lease.key!r} by {lease.owner!r} is not current"
    )
