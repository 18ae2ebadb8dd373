"""Several processes on one server: a consumer killed mid-item, a lease holder killed while
holding a key, lifecycle events published by another process (the lifecycle suite across two
processes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import valkey.asyncio as valkey_asyncio

from wfe_core.providers import LifecyclePublisher, QueueName, holder_is_gone
from wfe_core.serialization import to_primitive
from wfe_core.testing.conformance import LifecycleSuite
from wfe_valkey.lifecycle import ValkeyLifecycle, ValkeySubscription
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.options import ValkeyOptions
from wfe_valkey.queue import ValkeyQueue
from wfe_valkey.testing import unique_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from wfe_core.models import LifecycleEvent

CHILD = Path(__file__).with_name("_child.py")
W = QueueName.WORKFLOW


def spawn(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        assert process.stderr is not None
        raise AssertionError(f"the child exited early: {process.stderr.read()}")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


async def line_of(process: subprocess.Popen[str], limit: float = 60) -> dict[str, Any]:
    with anyio.fail_after(limit):
        return await anyio.to_thread.run_sync(read_line, process, abandon_on_cancel=True)


def reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.mark.anyio
async def test_a_lease_whose_holder_process_is_gone_is_taken_over_at_once(
    valkey_url: str, options: ValkeyOptions, caplog: pytest.LogCaptureFixture
) -> None:
    """The child holds the key for an hour; once it is killed (not even reaped yet: a
    zombie), this process takes the key at once, with a larger token, and says whose it was."""
    async with ValkeyLock(valkey_url, options) as lock:
        child = spawn("hold-lock", valkey_url, options.key_prefix, "crash", "3600")
        try:
            held = await line_of(child)
            holder = await lock.holder("crash")
            assert holder is not None
            assert (holder.owner, holder.host, holder.pid) == (
                f"pid-{child.pid}",
                socket.gethostname(),
                child.pid,
            )
            assert holder.expires_at.timestamp() - time.time() > 3500
            # Alive: refused.
            assert await lock.acquire("crash", owner="parent", ttl=30) is None
            child.send_signal(signal.SIGKILL)
            deadline = anyio.current_time() + 10
            while not holder_is_gone(holder.host, holder.pid):
                assert anyio.current_time() < deadline, "the child never died"
                await anyio.sleep(0.01)
            lease = await lock.acquire("crash", owner="parent", ttl=30)
        finally:
            reap(child)
        assert lease is not None, "the dead holder's lease was not taken over"
        assert lease.token > held["token"]
        assert f"from pid-{child.pid}: its process {child.pid}" in caplog.text
        holder = await lock.holder("crash")
        assert holder is not None
        assert (holder.owner, holder.pid) == ("parent", os.getpid())
        await lock.release(lease)
        assert await lock.holder("crash") is None


@pytest.mark.anyio
async def test_a_lease_of_a_process_on_another_machine_is_never_broken(
    valkey_url: str, options: ValkeyOptions
) -> None:
    """A holder recorded on another host name is waited for, whatever its pid says."""
    async with ValkeyLock(valkey_url, options) as lock:
        assert await lock.acquire("far", owner="here", ttl=30) is not None
        async with valkey_asyncio.Valkey.from_url(valkey_url) as client:
            await client.hset(lock.key("far"), mapping={"host": "elsewhere", "pid": "999999999"})
        assert await lock.acquire("far", owner="other", ttl=30) is None
        holder = await lock.holder("far")
        assert holder is not None
        assert (holder.owner, holder.host, holder.pid) == ("here", "elsewhere", 999999999)
    assert holder_is_gone(socket.gethostname(), 999999999)


@pytest.mark.anyio
async def test_a_consumer_killed_mid_item_has_it_redelivered_once_after_the_timeout(
    valkey_url: str, options: ValkeyOptions
) -> None:
    async with ValkeyQueue(valkey_url, options) as queue:
        await queue.enqueue(W, "wf-1")
        await queue.enqueue(W, "wf-2")
        child = spawn("take-one", valkey_url, options.key_prefix, "1.0")
        try:
            taken = await line_of(child)
            assert (taken["item"], taken["attempt"]) == ("wf-1", 1)
            child.send_signal(signal.SIGKILL)
            await anyio.to_thread.run_sync(child.wait)
        finally:
            reap(child)
        # The other item is not held up; the killed one's comes back after its timeout.
        other = await queue.dequeue(W, timeout=5)
        assert other is not None
        assert other.item_id == "wf-2"
        await queue.ack(other)
        again = await queue.dequeue(W, timeout=10, visibility_timeout=30)
        assert again is not None
        assert (again.item_id, again.attempt) == ("wf-1", 2)
        assert again.receipt != taken["receipt"]
        # Exactly once: no second copy, not after another timeout either.
        assert await queue.dequeue(W, timeout=1.5) is None
        await queue.ack(again)
        assert await queue.size(W) == 0


class RelayedLifecycle(LifecyclePublisher):
    """Subscriptions in this process; every publish made by a child process."""

    def __init__(self, local: ValkeyLifecycle, child: subprocess.Popen[str]) -> None:
        self.local = local
        self.child = child
        self.subscriptions: list[ValkeySubscription] = []

    async def publish(self, event: LifecycleEvent) -> None:
        for subscription in self.subscriptions:
            if (connecting := subscription.connecting) is not None:
                await connecting
        assert self.child.stdin is not None
        self.child.stdin.write(json.dumps(to_primitive(event)) + "\n")
        self.child.stdin.flush()
        assert (await line_of(self.child, limit=10)) == {"published": True}

    def subscribe(self) -> AsyncIterator[LifecycleEvent]:
        subscription = self.local.subscribe()
        self.subscriptions.append(subscription)
        return subscription


@pytest.fixture(scope="module")
def relay(valkey_url: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """One publishing child for the module (a child takes seconds to start on a busy
    machine); the suite's tests only look at events of their own workflow ids."""
    prefix = unique_prefix()
    child = spawn("relay", valkey_url, prefix, stdin=True)
    try:
        assert read_line(child) == {"ready": True}
        yield child, prefix
    finally:
        reap(child)


class TestLifecycleAcrossTwoProcesses(LifecycleSuite):
    __test__ = True
    settle_time = 0.2

    @pytest.fixture
    async def lifecycle(
        self, valkey_url: str, relay: tuple[subprocess.Popen[str], str]
    ) -> AsyncIterator[RelayedLifecycle]:
        child, prefix = relay
        async with ValkeyLifecycle(valkey_url, ValkeyOptions(key_prefix=prefix)) as local:
            yield RelayedLifecycle(local, child)
