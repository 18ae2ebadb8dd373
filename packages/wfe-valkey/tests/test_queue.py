"""The queue conformance suite and the queue's own promises, on a real server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.testing.conformance import QueueSuite
from wfe_valkey.queue import ValkeyQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wfe_valkey.options import ValkeyOptions


class TestValkeyQueue(QueueSuite):
    __test__ = True

    @pytest.fixture
    async def queue(self, valkey_url: str, options: ValkeyOptions) -> AsyncIterator[ValkeyQueue]:
        async with ValkeyQueue(valkey_url, options) as provider:
            yield provider

    @pytest.fixture
    async def other_queue(
        self, valkey_url: str, options: ValkeyOptions
    ) -> AsyncIterator[ValkeyQueue]:
        async with ValkeyQueue(valkey_url, options) as provider:
            yield provider
