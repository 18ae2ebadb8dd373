"""The lock conformance suite, and fencing tokens across a restart of the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import valkey.asyncio as valkey_asyncio

from wfe_core.errors import LockNotHeldError
from wfe_core.testing.conformance import LockSuite
from wfe_valkey.lock import ValkeyLock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_valkey.options import ValkeyOptions
    from wfe_valkey.testing import ValkeyTestServer


class TestValkeyLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self, valkey_url: str, options: ValkeyOptions) -> AsyncIterator[ValkeyLock]:
        async with ValkeyLock(valkey_url, options) as provider:
            yield provider

    @pytest.fixture
    async def other_lock(
        self, valkey_url: str, options: ValkeyOptions
    ) -> AsyncIterator[ValkeyLock]:
        async with ValkeyLock(valkey_url, options) as provider:
            yield provider


@pytest.mark.anyio
async def test_tokens_keep_growing_across_a_restart_that_loses_every_key(
    restartable: ValkeyTestServer, options: ValkeyOptions
) -> None:
    # Why the tokens are not an INCR counter: the server forgets it on a restart.
    async with valkey_asyncio.Valkey.from_url(restartable.url) as client:
        assert [await client.incr("counter") for _ in range(3)] == [1, 2, 3]
    async with ValkeyLock(restartable.url, options) as lock:
        before = await lock.acquire("wf-1", owner="a", ttl=30)
        assert before is not None
        other = await lock.acquire("wf-2", owner="a", ttl=30)
        assert other is not None
        restartable.restart()
        async with valkey_asyncio.Valkey.from_url(restartable.url) as client:
            assert await client.incr("counter") == 1  # the counter started over
        # The same provider object carries on after the restart (it reconnects).
        after = await lock.acquire("wf-1", owner="b", ttl=30)
        assert after is not None
        assert after.token > max(before.token, other.token)
        # The lease taken before the restart is gone with the data: refused.
        with pytest.raises(LockNotHeldError):
            await lock.renew(before, ttl=30)
