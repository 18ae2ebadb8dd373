"""Valkey lock: leases with a random owner and fencing tokens that never go backwards.

**Token design.** A plain ``INCR`` counter restarts at 1 when a server without persistence
restarts (measured: it does), and the persistence's fence check would then refuse every
write made under the new, smaller tokens. A token here is the server's clock in microseconds
(``TIME``) when the lease was taken, or the key's previous token + 1 when that is larger. A
lease lives at least a millisecond and two acquisitions of one key are at least a script run
apart, so each token is at most a few microseconds ahead of the clock that issued it, and a
token issued after a restart (which takes far longer than that) exceeds every token issued
before it, with no state kept across the restart. The one assumption: the server's clock does
not step back by more than the restart took. If it does, tokens may be lower than ones the
store already accepted, and the store refuses those writes (``StaleLeaseError``) until the
clock has caught up: safety holds, progress stalls. Tokens stay below 2**53.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from wfe_core.errors import LockNotHeldError, ProviderError
from wfe_core.providers import Lease, LeaseHolder, LockProvider, holder_is_gone, this_process
from wfe_core.providers import capabilities as cap
from wfe_valkey._connection import Connection
from wfe_valkey.options import ValkeyOptions, parse_url

if TYPE_CHECKING:
    from valkey.commands.core import AsyncScript

__all__ = ["ValkeyLock"]

logger = logging.getLogger(__name__)

#: How long a released key keeps its last token (ms), so an immediate re-acquire within the
#: same clock microsecond still gets a larger one.
_RETAIN_MS = 10_000

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS[1]: the lease hash (owner, token, host, pid), which expires with the lease, so the
# holder's host and pid live exactly as long as its lease. ARGV: owner, ttl ms, host, pid,
# and the token of a lease to break (its holder was found gone; '' for none).
# Returns {1, token, now µs} or {0, holder, ms until its lease expires, host, pid, token}.
_ACQUIRE = (
    _CLOCK
    + """
local lease = redis.call('HMGET', KEYS[1], 'owner', 'token', 'host', 'pid')
local holder = lease[1]
if holder and holder ~= '' and (ARGV[5] == '' or lease[2] ~= ARGV[5]) then
  return {0, holder, redis.call('PTTL', KEYS[1]), lease[3] or '', lease[4] or '', lease[2]}
end
local token = now
local last = tonumber(lease[2] or '0')
if token <= last then token = last + 1 end
-- %d, not tostring: Lua 5.1 prints numbers with 14 digits, a token has 16.
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', string.format('%d', token),
  'host', ARGV[3], 'pid', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, token, now}
"""
)

# Returns {owner, ms until the lease expires, host, pid}, or an empty owner when free.
_HOLDER = """
local lease = redis.call('HMGET', KEYS[1], 'owner', 'host', 'pid')
return {lease[1] or '', redis.call('PTTL', KEYS[1]), lease[2] or '', lease[3] or ''}
"""

# ARGV: owner, token, ttl ms. Returns the server's now (µs), or -1 when the lease is not current.
_RENEW = (
    _CLOCK
    + """
local lease = redis.call('HMGET', KEYS[1], 'owner', 'token')
if lease[1] ~= ARGV[1] or lease[2] ~= ARGV[2] then
  return -1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return now
"""
)

# ARGV: owner, token. Returns 1, or 0 when the lease is not current. The key keeps its last
# token for a while (no owner) instead of disappearing.
_RELEASE = f"""
local lease = redis.call('HMGET', KEYS[1], 'owner', 'token')
if lease[1] ~= ARGV[1] or lease[2] ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', '')
redis.call('HDEL', KEYS[1], 'host', 'pid')
redis.call('PEXPIRE', KEYS[1], {_RETAIN_MS})
return 1
"""

#: First and longest pause (seconds) between two attempts of a waiting acquire.
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.1


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _at(now_us: int, ttl: float) -> datetime:
    return datetime.fromtimestamp(now_us / 1_000_000, UTC) + timedelta(seconds=ttl)


class ValkeyLock(LockProvider):
    """Leases on a Valkey (or Redis) server, shared by every process using it.

    A lease is a hash that the server expires after ``ttl`` (milliseconds, ``PEXPIRE``), so a
    crashed holder's lease lapses on the server's clock. :meth:`renew` and :meth:`release`
    compare owner and token in a script, so only the current holder can extend or free a key;
    an expired lease is refused even when nobody took the key yet. Fencing tokens come from
    the server's clock (see the module's docstring) and keep growing across a restart of a
    server without persistence.

    The lease hash also records its holder's host name and pid (so they lapse with the
    lease): :meth:`holder` names them, and a key held by a process of this machine that no
    longer runs is taken over at once (see :func:`wfe_core.providers.holder_is_gone`), in the
    acquire script, on condition that the lease is still the dead holder's (its token).

    A waiting :meth:`acquire` tries again with a growing pause (5 ms to 100 ms), and at once
    when the holder's lease is due to expire.
    """

    capabilities = frozenset({cap.DISTRIBUTED, cap.LEASE_RENEWAL, cap.ASYNCIO_ONLY, cap.REMOTE})

    def __init__(self, url: str | None = None, options: ValkeyOptions | None = None) -> None:
        self.target = parse_url(url, options)
        self._connection: Connection | None = None
        self._scripts: dict[str, AsyncScript] = {}

    async def open(self) -> None:
        """Connect, and check the server answers."""
        if self._connection is not None:
            return
        connection = Connection(self.target)
        try:
            await connection.check()
        except BaseException:
            await connection.close()
            raise
        client = connection.client
        self._scripts = {
            "acquire": client.register_script(_ACQUIRE),
            "renew": client.register_script(_RENEW),
            "release": client.register_script(_RELEASE),
            "holder": client.register_script(_HOLDER),
        }
        self._connection = connection

    async def close(self) -> None:
        """Close the connections (leases stay until they expire or are released)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.close()

    def key(self, key: str) -> str:
        """The server key holding the lease of ``key``."""
        return f"{self.target.options.key_prefix}:lock:{key}"

    async def _script(self, name: str, key: str, *args: Any) -> Any:
        if self._connection is None:
            raise ProviderError("the valkey lock is not open (use `async with` or open())")
        script = self._scripts[name]
        keys = [self.key(key)]
        return await self._connection.run(
            f"{name} of lock {key!r}", lambda: script(keys, list(args))
        )

    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Lease | None:
        """Take ``key`` for ``owner`` for ``ttl`` seconds, waiting up to ``wait`` seconds for
        it to become free. ``None`` when it stayed held (or ``owner`` already holds it)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        deadline = anyio.current_time() + max(wait, 0.0)
        pause = _FIRST_PAUSE
        host, pid = this_process()
        # The lease being broken (its token, owner, host and pid): its holder is gone.
        broken: tuple[str, str, str, int] | None = None
        while True:
            reply = await self._script(
                "acquire", key, owner, _ms(ttl), host, pid, "" if broken is None else broken[0]
            )
            if int(reply[0]) == 1:
                if broken is not None:
                    # A warning: a process died holding work (killed, crashed).
                    logger.warning(
                        "took over the lease of %r from %s: its process %d on %s no longer runs",
                        key,
                        broken[1],
                        broken[3],
                        broken[2],
                    )
                return Lease(
                    key=key, owner=owner, token=int(reply[1]), expires_at=_at(int(reply[2]), ttl)
                )
            holder, held_host, held_pid, held_token = (
                _text(reply[1]),
                _text(reply[3]),
                _pid(reply[4]),
                _text(reply[5]),
            )
            if (
                holder != owner
                and held_pid is not None
                and (broken is None or broken[0] != held_token)
                and holder_is_gone(held_host, held_pid)
            ):
                # Killed without releasing it: take that very lease over now (a renewal
                # keeps the token; a new holder's lease has another one and is kept).
                broken = (held_token, holder, held_host, held_pid)
                continue
            broken = None
            remaining = deadline - anyio.current_time()
            if holder == owner or remaining <= 0:
                # Not re-entrant: waiting for one's own lease to lapse makes no sense.
                return None
            expires_in = int(reply[2]) / 1000
            sleep = min(pause, remaining)
            if expires_in >= 0:
                sleep = min(sleep, expires_in)
            await anyio.sleep(sleep)
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def holder(self, key: str) -> LeaseHolder | None:
        """The current holder of ``key``: its owner, expiry, host name and pid."""
        reply = await self._script("holder", key)
        owner, expires_in = _text(reply[0]), int(reply[1])
        if not owner or expires_in < 0:
            return None
        return LeaseHolder(
            owner=owner,
            expires_at=datetime.now(UTC) + timedelta(milliseconds=expires_in),
            host=_text(reply[2]) or None,
            pid=_pid(reply[3]),
        )

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend the current ``lease`` to ``ttl`` seconds from now (same token)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        now = int(await self._script("renew", lease.key, lease.owner, str(lease.token), _ms(ttl)))
        if now < 0:
            raise _not_current(lease)
        return attrs.evolve(lease, expires_at=_at(now, ttl))

    async def release(self, lease: Lease) -> None:
        """Free the key of the current ``lease`` at once."""
        if int(await self._script("release", lease.key, lease.owner, str(lease.token))) != 1:
            raise _not_current(lease)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pid(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text.isdigit() else None


def _not_current(lease: Lease) -> LockNotHeldError:
    return LockNotHeldError(
        f"lease {lease.token} of {lease.key!r} by {lease.owner!r} is not current"
    )
