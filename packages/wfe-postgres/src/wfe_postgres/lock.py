"""PostgreSQL lock: leases with expiry and fencing tokens, shared by every process on the
database.

A lease is a row of ``wfe_locks``; its token comes from the sequence ``wfe_lock_tokens``,
which is never reset, so the tokens of a key only ever grow: across release and re-acquire,
expiry and takeover, and restarts of the server. Expiry is the database's ``now()``, so the
hosts' clocks do not matter. A release sends ``NOTIFY`` so a waiting acquire looks at once.

Each lease records its holder's host name and process id (migration 3). A key held by a
process of this machine that no longer runs is taken over at once: the acquire that finds it
so sends its statement again naming the dead lease's token, and the statement takes the key
when the lease is still that one (a token is unique: the sequence hands it out once).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
from psycopg import sql

from wfe_core.errors import LockNotHeldError
from wfe_core.providers import Lease, LeaseHolder, LockProvider, holder_is_gone, this_process
from wfe_core.providers import capabilities as cap
from wfe_postgres._batch import batcher_of
from wfe_postgres._database import rendered
from wfe_postgres._listener import ListeningProviderMixin, notify_sql

if TYPE_CHECKING:
    from wfe_postgres.options import PostgresOptions

__all__ = ["PostgresLock", "lock_topic", "not_current"]

logger = logging.getLogger("wfe_postgres.lock")

#: A waiting acquire looks again at least this often (seconds), in case a release's
#: notification is lost; expiry of the holder's lease is waited for exactly.
_POLL_FLOOR: Final = 1.0


def lock_topic(key: str) -> str:
    """The notification payload that wakes the waiters for ``key``."""
    return f"l:{key}"


def _statements(schema: str) -> dict[str, sql.Composed]:
    # Unqualified: every connection has the schema as its search_path.
    table = sql.Identifier("wfe_locks")
    tokens = sql.Literal("wfe_lock_tokens")
    return {
        # Take the key when it is free, its lease has expired, or it is the lease of the
        # token %(broken)s (a holder found gone; NULL otherwise), with a fresh token. The row
        # lock of ON CONFLICT serializes concurrent takers: one wins, the others see it held.
        # Refused: the holder, how long its lease still lasts, where it runs and its token,
        # in the same round trip.
        "acquire": sql.SQL(
            "WITH taken AS ("
            " INSERT INTO {t} AS l (key, owner, token, expires_at, holder_host, holder_pid)"
            " VALUES (%(key)s, %(owner)s, nextval({seq}::regclass),"
            "  now() + make_interval(secs => %(ttl)s), %(host)s, %(pid)s)"
            " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, token = excluded.token,"
            " expires_at = excluded.expires_at, holder_host = excluded.holder_host,"
            " holder_pid = excluded.holder_pid"
            " WHERE l.expires_at <= now() OR l.token = %(broken)s::bigint"
            " RETURNING token, expires_at)"
            " SELECT token, expires_at, NULL::text, NULL::float8, NULL::text, NULL::integer"
            " FROM taken"
            " UNION ALL"
            " SELECT token, NULL, owner, extract(epoch FROM expires_at - now())::float8,"
            " holder_host, holder_pid"
            " FROM {t} WHERE key = %(key)s AND NOT EXISTS (SELECT 1 FROM taken)"
        ).format(t=table, seq=tokens),
        "holder": sql.SQL(
            "SELECT owner, expires_at, holder_host, holder_pid FROM {t}"
            " WHERE key = %(key)s AND expires_at > now()"
        ).format(t=table),
        "renew": sql.SQL(
            "UPDATE {t} SET expires_at = now() + make_interval(secs => %(ttl)s)"
            " WHERE key = %(key)s AND owner = %(owner)s AND token = %(token)s"
            " AND expires_at > now() RETURNING expires_at"
        ).format(t=table),
        "release": sql.SQL(
            "WITH freed AS ("
            " DELETE FROM {t} WHERE key = %(key)s AND owner = %(owner)s AND token = %(token)s"
            " AND expires_at > now() RETURNING key)"
            " SELECT {notify} FROM freed"
        ).format(t=table, notify=notify_sql(schema)),
    }


class PostgresLock(ListeningProviderMixin, LockProvider):
    """Leases in a PostgreSQL table, excluding every process that uses the database.

    * At most one unexpired lease per key; a lease lapses ``ttl`` seconds (database clock)
      after it was taken or renewed, and an expired lease is no longer current: renew and
      release refuse it even before another owner takes the key.
    * Fencing tokens come from one sequence and grow with every acquisition of any key, also
      across a restart of the server. ``PostgresPersistence`` refuses writes with a token
      older than the newest it has accepted for the instance.
    * A waiting :meth:`acquire` wakes on the release's ``NOTIFY`` (any process), or when the
      holder's lease expires.
    * Each lease records its holder's host name and pid (:meth:`holder`); a key held by a
      process of this machine that no longer runs is taken over at once (see
      :func:`wfe_core.providers.holder_is_gone`), with a new, larger token.
    """

    capabilities = frozenset(
        {cap.DURABLE, cap.DISTRIBUTED, cap.LEASE_RENEWAL, cap.ASYNCIO_ONLY, cap.REMOTE}
    )

    def __init__(
        self,
        url: str | None,
        options: PostgresOptions | None = None,
        *,
        share_connections: bool = True,
    ) -> None:
        super().__init__(url, options, share_connections=share_connections)
        self._sql = rendered(_statements(self.target.options.schema))

    async def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        # Sent with the other short statements of this process made at the same time (the
        # persistence's writes, other leases): one round trip and one commit for them all.
        return await batcher_of(self.database).run(self._sql[name], params, name)

    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Lease | None:
        """Take ``key`` for ``owner`` for ``ttl`` seconds, waiting up to ``wait`` seconds for
        it to become free. ``None`` when it stayed held (or ``owner`` already holds it)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        host, pid = this_process()
        params = {"key": key, "owner": owner, "ttl": float(ttl), "host": host, "pid": pid}
        if wait <= 0:
            lease, _ = await self._try(params)
            return lease
        listener = self.listener
        deadline = anyio.current_time() + wait
        with listener.watch(lock_topic(key)) as watch:
            while True:
                watch.rearm()
                lease, held = await self._try(params)
                if lease is not None:
                    return lease
                if held is not None and held.owner == owner:
                    return None  # not re-entrant: waiting for one's own lease makes no sense
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return None
                pause = min(remaining, _POLL_FLOOR * random.uniform(0.8, 1.2))
                lasts = 0.0 if held is None else held.lasts
                if lasts is not None:
                    pause = min(pause, max(lasts, 0.0))
                await watch.wait(pause)

    async def _try(self, params: dict[str, Any]) -> tuple[Lease | None, _Held | None]:
        lease, held = await self._attempt({**params, "broken": None})
        if held is not None and holder_is_gone(held.host, held.pid):
            # Killed without releasing it: take that very lease over now (a renewal that
            # slipped in meanwhile keeps the token, a new holder has another one).
            lease, now_held = await self._attempt({**params, "broken": held.token})
            if lease is not None:
                # A warning: a process died holding work (killed, crashed).
                logger.warning(
                    "took over the lease of %r from %s: its process %d on %s no longer runs",
                    params["key"],
                    held.owner,
                    held.pid,
                    held.host,
                )
            held = now_held
        return lease, held

    async def _attempt(self, params: dict[str, Any]) -> tuple[Lease | None, _Held | None]:
        rows = await self._rows("acquire", params)
        if not rows:
            # Freed between the two halves of the statement's snapshot: look again soon.
            return None, None
        token, expires_at, owner, lasts, host, pid = rows[0]
        if expires_at is None:
            return None, _Held(int(token), owner, lasts, host, pid)
        lease = Lease(
            key=params["key"], owner=params["owner"], token=int(token), expires_at=expires_at
        )
        return lease, None

    async def holder(self, key: str) -> LeaseHolder | None:
        """The current holder of ``key``: its owner, expiry, host name and pid."""
        rows = await self._rows("holder", {"key": key})
        if not rows:
            return None
        owner, expires_at, host, pid = rows[0]
        return LeaseHolder(owner=owner, expires_at=expires_at, host=host, pid=pid)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend the current ``lease`` to ``ttl`` seconds from now (same token)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        rows = await self._rows("renew", {**_identity(lease), "ttl": float(ttl)})
        if not rows:
            raise not_current(lease)
        return Lease(key=lease.key, owner=lease.owner, token=lease.token, expires_at=rows[0][0])

    async def release(self, lease: Lease) -> None:
        """Free the key of the current ``lease`` at once and wake its waiters."""
        params = {**_identity(lease), "topic": lock_topic(lease.key)}
        if not await self._rows("release", params):
            raise not_current(lease)


class _Held(NamedTuple):
    """The current lease of a key another owner holds."""

    token: int
    owner: str
    #: Seconds until it lapses (database clock).
    lasts: float | None
    host: str | None
    pid: int | None


def _identity(lease: Lease) -> dict[str, Any]:
    return {"key": lease.key, "owner": lease.owner, "token": lease.token}


def not_current(lease: Lease) -> LockNotHeldError:
    """The error of a renewal or release of ``lease``, not the key's current one."""
    return LockNotHeldError(
        f"lease {lease.token} of {lease.key!r} by {lease.owner!r} is not current"
    )
