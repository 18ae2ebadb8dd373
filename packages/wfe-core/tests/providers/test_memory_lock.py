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
