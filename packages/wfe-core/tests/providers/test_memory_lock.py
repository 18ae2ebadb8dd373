from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.memory import MemoryLock
from wfe_core.providers import Lease, LockProvider
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance import LockSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class TestMemoryLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def lock(self) -> AsyncIterator[MemoryLock]:
        async with MemoryLock() as provider:
            yield provider


class SharedLockView(LockProvider):
    """A second provider object over one MemoryLock, standing in for another process's
    connection to a shared backend, so the suite's ``distributed`` tests run here too."""

    capabilities = MemoryLock.capabilities | {cap.DISTRIBUTED}

    def __init__(self, shared: MemoryLock) -> None:
        self.shared = shared

    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Lease | None:
        return await self.shared.acquire(key, owner=owner, ttl=ttl, wait=wait)

    async def renew(self, lease: Lease, *, ttl: float) -> Lease:
        return await self.shared.renew(lease, ttl=ttl)

    async def release(self, lease: Lease) -> None:
        await self.shared.release(lease)


class TestSharedMemoryLock(LockSuite):
    __test__ = True

    @pytest.fixture
    async def shared(self) -> AsyncIterator[MemoryLock]:
        async with MemoryLock() as provider:
            yield provider

    @pytest.fixture
    async def lock(self, shared: MemoryLock) -> AsyncIterator[SharedLockView]:
        async with SharedLockView(shared) as provider:
            yield provider

    @pytest.fixture
    async def other_lock(self, shared: MemoryLock) -> AsyncIterator[SharedLockView]:
        async with SharedLockView(shared) as provider:
            yield provider


@pytest.mark.anyio
async def test_tokens_of_a_lock_made_after_a_restart_are_higher() -> None:
    """A durable store may keep the tokens of a process that has ended as fences: the lock of
    the next process (a new MemoryLock) must issue higher ones, or its writes are refused."""
    async with MemoryLock() as before:
        key = "workflow-1"
        last = None
        for owner in ("a", "b", "c"):
            lease = await before.acquire(key, owner=owner, ttl=30)
            assert lease is not None
            await before.release(lease)
            last = lease
    assert last is not None
    async with MemoryLock() as after:
        lease = await after.acquire(key, owner="d", ttl=30)
        assert lease is not None
        assert lease.token > last.token
