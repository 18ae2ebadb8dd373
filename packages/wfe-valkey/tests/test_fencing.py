"""A lock holder paused past its lease: another holder takes over, and the paused one's
renew, release and persistence writes are refused (Valkey lock; SQLite and PostgreSQL
persistence)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core.errors import ConcurrencyError, LockNotHeldError
from wfe_core.models import WorkflowInstance
from wfe_postgres import PostgresPersistence
from wfe_sqlite import SqlitePersistence
from wfe_valkey.lock import ValkeyLock

if TYPE_CHECKING:
    from pathlib import Path

    from wfe_core.providers import PersistenceProvider
    from wfe_valkey.options import ValkeyOptions

#: The store-side check of the fencing contract (``wfe_core.providers.capabilities``).
FENCING = "fencing"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> PersistenceProvider:
    """The persistence the writes go to: SQLite, or PostgreSQL (a schema of the test's own)."""
    if request.param == "sqlite":
        return SqlitePersistence(f"sqlite:///{tmp_path}/wfe.db")
    return PostgresPersistence(request.getfixturevalue("pg_url"))


@pytest.mark.anyio
async def test_a_holder_paused_past_its_ttl_is_refused_everywhere(
    store: PersistenceProvider, valkey_url: str, options: ValkeyOptions
) -> None:
    if FENCING not in type(store).capabilities:
        pytest.skip(f"{type(store).__name__} lacks the 'fencing' capability")
    from wfe_core.errors import StaleLeaseError  # type: ignore[attr-defined,unused-ignore]

    async with (
        store,
        ValkeyLock(valkey_url, options) as lock_a,
        ValkeyLock(valkey_url, options) as lock_b,
    ):
        instance = WorkflowInstance(definition_id="flow", version=1, data={"by": "nobody"})
        await store.create_workflow(instance)
        paused = await lock_a.acquire(instance.id, owner="host-a", ttl=0.3)
        assert paused is not None
        mine = await store.get_workflow(instance.id)
        mine.data = {"by": "a"}
        await store.persist_workflow(mine, fence=paused.token)  # type: ignore[call-arg,unused-ignore]

        await anyio.sleep(0.6)  # host a is paused (a long GC, a stopped VM) past its lease
        current = await lock_b.acquire(instance.id, owner="host-b", ttl=30)
        assert current is not None
        assert current.token > paused.token
        theirs = await store.get_workflow(instance.id)
        theirs.data = {"by": "b"}
        await store.persist_workflow(theirs, fence=current.token)  # type: ignore[call-arg,unused-ignore]

        # Host a wakes up: its lease is gone...
        with pytest.raises(LockNotHeldError):
            await lock_a.renew(paused, ttl=30)
        with pytest.raises(LockNotHeldError):
            await lock_a.release(paused)
        # ...and so is its right to write, even from a fresh read (the revision matches).
        fresh = await store.get_workflow(instance.id)
        fresh.data = {"by": "a, late"}
        with pytest.raises(StaleLeaseError):
            await store.persist_workflow(fresh, fence=paused.token)  # type: ignore[call-arg,unused-ignore]
        with pytest.raises(ConcurrencyError):
            await store.persist_workflow(mine, fence=paused.token)  # type: ignore[call-arg,unused-ignore]
        assert (await store.get_workflow(instance.id)).data == {"by": "b"}
        # The current holder is unaffected.
        await lock_b.renew(current, ttl=30)
        await lock_b.release(current)
