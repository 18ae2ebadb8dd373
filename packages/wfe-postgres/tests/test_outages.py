"""The queue and the lock through outages: the LISTEN connection killed, the server restarted.

The consumers here poll rarely (every 60 s), so an item that arrives within the dequeue's
timeout after an outage was found because the listener came back and woke its waiters, not by
a poll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import psycopg
import pytest

from wfe_core.providers import QueueMessage, QueueName
from wfe_postgres.lock import PostgresLock
from wfe_postgres.queue import PostgresQueue
from wfe_postgres.testing import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator

W = QueueName.WORKFLOW
#: Consumers that look by themselves only once a minute.
RARE_POLLS = "poll_interval=60&max_poll_interval=60"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresServer]:
    """A server of this module's own: the tests kill its connections and restart it."""
    with PostgresServer(fast=True) as server:
        yield server


def _url(server: PostgresServer, query: str = "") -> str:
    return f"{server.url}?schema=outages" + (f"&{query}" if query else "")


def _listener_pids(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%'"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def _terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def _dequeue_while(
    queue: PostgresQueue, action: object, *, timeout: float = 20.0
) -> QueueMessage | None:
    """Block in ``queue.dequeue`` and run ``action`` (a sync callable) meanwhile."""
    received: list[QueueMessage | None] = []

    async def consume() -> None:
        received.append(await queue.dequeue(W, timeout=timeout, visibility_timeout=60))

    with anyio.fail_after(timeout + 10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.3)  # blocked in the wait by now
            assert callable(action)
            await anyio.to_thread.run_sync(action)
    return received[0]


@pytest.mark.anyio
async def test_killed_listen_connection_reconnects_and_wakes_waiters(
    cluster: PostgresServer,
) -> None:
    async with PostgresQueue(_url(cluster, RARE_POLLS)) as queue:
        pids = _listener_pids(cluster.url)
        assert len(pids) == 1, "one LISTEN connection per process"

        def kill_then_enqueue() -> None:
            _terminate(cluster.url, pids)
            # Sent while nobody listens: this notification is gone.
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO outages.wfe_queue (queue, item_id, visible_at, enqueued_at)"
                    " VALUES ('workflow', 'during', now(), now())"
                )
                conn.execute("NOTIFY \"wfe.outages\", 'q:workflow'")

        message = await _dequeue_while(queue, kill_then_enqueue)
        assert message is not None
        assert message.item_id == "during"
        await queue.ack(message)
        # The drop wakes the waiters at once, so the item can be found before the listener's
        # new connection is up: wait for it (bounded), then check there is exactly one.
        for _ in range(200):  # up to 10 s
            new_pids = _listener_pids(cluster.url)
            if new_pids:
                break
            await anyio.sleep(0.05)
        assert len(new_pids) == 1
        assert new_pids != pids, "listening again on a new connection"

        # Notifications wake waiters again.
        async with PostgresQueue(_url(cluster), share_connections=False) as other:
            message = await _dequeue_while(
                queue, lambda: anyio.from_thread.run(other.enqueue, W, "after")
            )
        assert message is not None
        assert message.item_id == "after"
        await queue.ack(message)


@pytest.mark.anyio
async def test_server_restart_mid_dequeue(cluster: PostgresServer) -> None:
    async with (
        PostgresQueue(_url(cluster, RARE_POLLS)) as queue,
        PostgresLock(_url(cluster)) as lock,
    ):
        await queue.enqueue(W, "before")
        before = await lock.acquire("restart", owner="a", ttl=1.0)
        assert before is not None

        def restart_then_enqueue() -> None:
            cluster.restart()
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO outages.wfe_queue (queue, item_id, visible_at, enqueued_at)"
                    " VALUES ('workflow', 'during', now(), now())"
                )

        # The waiting consumer takes what was queued before the restart at once; then waits
        # through the restart for the item added meanwhile (no notification reached it).
        first = await queue.dequeue(W, timeout=5, visibility_timeout=60)
        assert first is not None
        assert first.item_id == "before"
        message = await _dequeue_while(queue, restart_then_enqueue, timeout=30)
        assert message is not None
        assert message.item_id == "during"
        # The same providers carry on: ack, enqueue, and a wake-up by notification.
        await queue.ack(first)
        await queue.ack(message)
        async with PostgresQueue(_url(cluster), share_connections=False) as other:
            woken = await _dequeue_while(
                queue, lambda: anyio.from_thread.run(other.enqueue, W, "after")
            )
        assert woken is not None
        assert woken.item_id == "after"
        await queue.ack(woken)
        assert await queue.size(W) == 0
        # Fencing tokens never go back, also across the restart.
        after = await lock.acquire("restart", owner="b", ttl=30.0, wait=10.0)
        assert after is not None
        assert after.token > before.token
        await lock.release(after)
