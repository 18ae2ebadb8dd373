"""Connections the server dropped are replaced: the next operation reconnects and succeeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import valkey.asyncio as valkey_asyncio

from wfe_core.providers import QueueName
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.queue import ValkeyQueue

if TYPE_CHECKING:
    from wfe_valkey.options import ValkeyOptions
    from wfe_valkey.testing import ValkeyTestServer


@pytest.mark.anyio
async def test_providers_carry_on_after_the_server_drops_their_connections(
    restartable: ValkeyTestServer, options: ValkeyOptions
) -> None:
    valkey_url = restartable.url  # a server of its own: the others' connections stay
    async with ValkeyQueue(valkey_url, options) as queue, ValkeyLock(valkey_url, options) as lock:
        await queue.enqueue(QueueName.WORKFLOW, "before")
        lease = await lock.acquire("key", owner="a", ttl=30)
        assert lease is not None
        # The server closes every other client's connection (an idle timeout, a failover).
        async with valkey_asyncio.Valkey.from_url(valkey_url) as admin:
            killed = await admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 2
        await queue.enqueue(QueueName.WORKFLOW, "after")
        assert await queue.size(QueueName.WORKFLOW) == 2
        renewed = await lock.renew(lease, ttl=30)
        assert renewed.token == lease.token
        await lock.release(renewed)
