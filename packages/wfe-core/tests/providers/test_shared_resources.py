"""SharedResources: one open resource per key and event loop, closed by the last release."""

from __future__ import annotations

import anyio
import pytest

from wfe_core.spi import SharedResources

pytestmark = pytest.mark.anyio


class Resource:
    def __init__(self, key: str) -> None:
        self.key = key
        self.opened = 0
        self.closed = 0
        self.fail_open = key.startswith("bad")


async def _open(resource: Resource) -> None:
    await anyio.lowlevel.checkpoint()
    if resource.fail_open:
        raise OSError(f"cannot open {resource.key}")
    resource.opened += 1


async def _close(resource: Resource) -> None:
    resource.closed += 1


def registry() -> SharedResources[str, Resource]:
    return SharedResources(Resource, _open, _close)


async def test_one_key_is_one_resource_until_the_last_release() -> None:
    shared = registry()
    first = await shared.acquire("a")
    second = await shared.acquire("a")
    other = await shared.acquire("b")
    assert first is second
    assert other is not first
    assert shared.references(first) == 2
    await shared.release(second)
    assert (first.closed, shared.references(first)) == (0, 1)
    await shared.release(first)
    assert (first.closed, shared.references(first)) == (1, 0)
    # Released for good: a later acquire opens a new one, and a stray release does nothing.
    again = await shared.acquire("a")
    assert again is not first
    await shared.release(first)
    assert (first.closed, shared.references(again)) == (1, 1)
    await shared.release(again)
    await shared.release(other)
    assert (again.closed, other.closed) == (1, 1)


async def test_an_unshared_resource_is_its_own() -> None:
    shared = registry()
    common = await shared.acquire("a")
    own = await shared.acquire("a", shared=False)
    assert own is not common
    assert await shared.acquire("a") is common
    await shared.release(own)
    assert (own.closed, common.closed) == (1, 0)
    await shared.release(common)
    await shared.release(common)
    assert common.closed == 1


async def test_a_failed_open_releases_its_reference() -> None:
    shared = registry()
    with pytest.raises(OSError, match="cannot open bad"):
        await shared.acquire("bad")
    # Closed (the last reference) and forgotten: the next acquire tries a new one.
    with pytest.raises(OSError, match="cannot open bad"):
        await shared.acquire("bad")


def test_each_event_loop_has_its_own() -> None:
    shared = registry()
    seen: list[Resource] = []

    async def use() -> None:
        resource = await shared.acquire("a")
        seen.append(resource)
        await shared.release(resource)

    anyio.run(use)
    anyio.run(use)
    assert seen[0] is not seen[1]
    assert [r.closed for r in seen] == [1, 1]
