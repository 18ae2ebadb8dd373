"""A child process holding a PostgreSQL lease: ``python _lock_child.py URL KEY TTL``.

It takes ``KEY``, prints the lease's token as one JSON line (flushed) and hangs until killed,
so the parent can kill it holding the lease.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from wfe_postgres.lock import PostgresLock


async def hold(url: str, key: str, ttl: float) -> None:
    async with PostgresLock(url) as lock:
        lease = await lock.acquire(key, owner=f"pid-{os.getpid()}", ttl=ttl)
        assert lease is not None
        print(json.dumps({"token": lease.token}), flush=True)
        await anyio.sleep(3600)


if __name__ == "__main__":
    anyio.run(hold, sys.argv[1], sys.argv[2], float(sys.argv[3]))
