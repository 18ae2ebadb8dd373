"""The lease statements of ``wfe_locks`` (internal), run by the lock and, for the writes that
take or give back a lease in their own transaction (capability ``leased-writes``), by the
persistence on the same file.

They are plain SQL run on the driver's connection (see :func:`wfe_sqlite.engine.driver`):
every workflow pass takes and frees a lease.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

from wfe_core.errors import LockNotHeldError
from wfe_core.providers import holder_is_gone
from wfe_sqlite._connections import driver
from wfe_sqlite._times import now_us

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from wfe_core.providers import Lease

__all__ = [
    "SECOND",
    "Attempt",
    "channel",
    "not_current",
    "release",
    "report_takeover",
    "take",
    "ttl_us",
]

# The lock's: a takeover reads the same whichever provider's write made it.
logger = logging.getLogger("wfe_sqlite.lock")

#: Microseconds in a second (the file stores times in µs).
SECOND = 1_000_000

HELD = "SELECT owner, expires_at, holder_host, holder_pid, token FROM wfe_locks WHERE key = ?"
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
# Ends the lease of a holder found gone (see take), so the key can be taken now.
_BREAK = "UPDATE wfe_locks SET expires_at = 0 WHERE key = ? AND token = ?"
_COUNT_TOKEN = "UPDATE wfe_lock_tokens SET value = ? WHERE id = 1"
_RELEASE = "DELETE FROM wfe_locks WHERE key = ? AND token = ? AND owner = ? AND expires_at > ?"


class Attempt(NamedTuple):
    #: The new lease's token, or None when the key is held.
    token: int | None
    #: The new lease's expiry, or the current holder's (µs since the epoch).
    expires_at: int
    #: The owner of the lease (the new one, or the current holder).
    owner: str
    #: The holder whose lease was broken to take the key: its owner, host and pid.
    broke: tuple[str, str, int] | None = None


def take(
    conn: Connection,
    *,
    key: str,
    owner: str,
    ttl_us: int,
    holder: tuple[str, int],
) -> Attempt:
    """Take ``key`` for ``owner`` (``holder``: this host name and pid) in the write
    transaction of ``conn``; a key held by a process of this machine that no longer runs is
    taken over."""
    raw = driver(conn)
    now = now_us()
    expires = now + ttl_us
    host, pid = holder
    taken = raw.execute(_TAKE, (key, owner, expires, host, pid, now)).fetchone()
    if taken is not None:
        token = int(taken[0])
        raw.execute(_COUNT_TOKEN, (token,))
        return Attempt(token, expires, owner)
    # Held (by someone else, or by this owner) until a moment after now.
    held = raw.execute(HELD, (key,)).fetchone()
    held_owner, held_host, held_pid = str(held[0]), held[2], held[3]
    if holder_is_gone(held_host, held_pid):
        # Its process was killed without releasing it (the write transaction holds the
        # file: nobody else takes or renews the lease meanwhile).
        raw.execute(_BREAK, (key, held[4]))
        taken = raw.execute(_TAKE, (key, owner, expires, host, pid, now)).fetchone()
        token = int(taken[0])
        raw.execute(_COUNT_TOKEN, (token,))
        return Attempt(token, expires, owner, broke=(held_owner, held_host, int(held_pid)))
    return Attempt(None, int(held[1]), held_owner)


def report_takeover(key: str, attempt: Attempt) -> None:
    """Log the takeover ``attempt`` made, if it broke a lease (a warning: a process died
    holding work, killed or crashed)."""
    if attempt.broke is not None:
        gone, on, pid = attempt.broke
        logger.warning(
            "took over the lease of %r from %s: its process %d on %s no longer runs",
            key,
            gone,
            pid,
            on,
        )


def release(conn: Connection, lease: Lease) -> None:
    """Free the key of ``lease`` in the write transaction of ``conn``;
    :class:`~wfe_core.errors.LockNotHeldError` when it is not the current lease."""
    params = (lease.key, lease.token, lease.owner, now_us())
    if driver(conn).execute(_RELEASE, params).rowcount == 0:
        raise not_current(lease)


def ttl_us(ttl: float) -> int:
    """A lease time of ``ttl`` seconds in the file's unit (µs, at least one)."""
    return max(int(ttl * SECOND), 1)


def channel(key: str) -> str:
    """The change channel a release of ``key`` wakes (its waiting acquires)."""
    return f"lock:{key}"


def not_current(lease: Lease) -> LockNotHeldError:
    return LockNotHeldError(
        f"lease {lease.token} of {lease.key!r} by {lease.owner!r} is not current"
    )
