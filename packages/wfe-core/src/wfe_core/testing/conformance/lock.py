"""The conformance suite of :class:`~wfe_core.providers.LockProvider`."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    rule,
    run_state_machine_as_test,
)

from wfe_core.errors import LockNotHeldError
from wfe_core.providers import Lease, LockProvider, holder_is_gone, this_process
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance._support import MACHINE_SETTINGS, call, require

__all__ = ["LockSuite", "lock_state_machine"]

#: Long enough never to lapse during a test that does not wait for it on purpose.
LONG_TTL = 30.0
#: Short enough to wait out; generous for a noisy machine.
SHORT_TTL = 0.2


def _key() -> str:
    # Unique per test, so providers sharing a server across tests never see each other's keys.
    return f"wfe-test-{uuid.uuid4().hex}"


class LockSuite:
    """Contract tests every :class:`~wfe_core.providers.LockProvider` must pass.

    Subclass it in a test module, set ``__test__ = True`` and supply an async ``lock`` fixture
    that yields an entered provider (fresh per test)::

        class TestMyLock(LockSuite):
            __test__ = True

            @pytest.fixture
            async def lock(self):
                async with MyLock(...) as provider:
                    yield provider
    """

    __test__ = False

    @pytest.fixture
    def other_lock(self) -> LockProvider | None:
        """A second entered provider on the same backend as ``lock`` (another process's view).

        Providers with the ``distributed`` capability override this fixture so the suite can
        check that leases are shared between provider instances; ``None`` skips those tests.
        """
        return None

    @pytest.mark.anyio
    async def test_acquire_returns_a_lease(self, lock: LockProvider) -> None:
        key = _key()
        before = datetime.now(UTC) - timedelta(seconds=1)
        lease = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert lease is not None
        assert (lease.key, lease.owner) == (key, "a")
        assert isinstance(lease.token, int)
        assert lease.expires_at.tzinfo is not None
        assert lease.expires_at > before + timedelta(seconds=LONG_TTL / 2)

    @pytest.mark.anyio
    async def test_holder_names_the_current_lease_or_cannot_say(self, lock: LockProvider) -> None:
        """``holder`` is optional (``None``: cannot say); a lock that answers names the
        current lease's owner and expiry, this process when it records where holders run,
        and nobody once the key is released."""
        key = _key()
        assert await lock.holder(key) is None
        lease = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert lease is not None
        holder = await lock.holder(key)
        if holder is None:
            return  # the lock cannot say: allowed
        assert holder.owner == "a"
        assert abs((holder.expires_at - lease.expires_at).total_seconds()) < 5
        if holder.pid is not None:
            assert (holder.host, holder.pid) == this_process()
            assert not holder_is_gone(holder.host, holder.pid)
        await lock.release(lease)
        assert await lock.holder(key) is None

    @pytest.mark.anyio
    async def test_held_key_is_refused_to_another_owner(self, lock: LockProvider) -> None:
        key = _key()
        assert await lock.acquire(key, owner="a", ttl=LONG_TTL) is not None
        assert await lock.acquire(key, owner="b", ttl=LONG_TTL) is None

    @pytest.mark.anyio
    async def test_not_reentrant(self, lock: LockProvider) -> None:
        key = _key()
        lease = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert lease is not None
        assert await lock.acquire(key, owner="a", ttl=LONG_TTL) is None
        assert await lock.acquire(key, owner="a", ttl=LONG_TTL, wait=0.3) is None
        # The refused attempt did not disturb the lease.
        await lock.release(lease)

    @pytest.mark.anyio
    async def test_keys_are_independent(self, lock: LockProvider) -> None:
        first, second = _key(), _key()
        assert await lock.acquire(first, owner="a", ttl=LONG_TTL) is not None
        assert await lock.acquire(second, owner="b", ttl=LONG_TTL) is not None

    @pytest.mark.anyio
    async def test_release_frees_the_key_at_once(self, lock: LockProvider) -> None:
        key = _key()
        lease = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert lease is not None
        await lock.release(lease)
        other = await lock.acquire(key, owner="b", ttl=LONG_TTL)
        assert other is not None
        assert other.owner == "b"

    @pytest.mark.anyio
    async def test_release_twice_is_refused(self, lock: LockProvider) -> None:
        lease = await lock.acquire(_key(), owner="a", ttl=LONG_TTL)
        assert lease is not None
        await lock.release(lease)
        with pytest.raises(LockNotHeldError):
            await lock.release(lease)

    @pytest.mark.anyio
    async def test_release_by_non_owner_is_refused(self, lock: LockProvider) -> None:
        key = _key()
        lease = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert lease is not None
        forged = Lease(key=key, owner="b", token=lease.token, expires_at=lease.expires_at)
        with pytest.raises(LockNotHeldError):
            await lock.release(forged)
        # The holder still holds it.
        assert await lock.acquire(key, owner="b", ttl=LONG_TTL) is None
        await lock.release(lease)

    @pytest.mark.anyio
    async def test_never_issued_lease_is_refused(self, lock: LockProvider) -> None:
        key = _key()
        never = Lease(key=key, owner="a", token=987654321, expires_at=datetime.now(UTC))
        with pytest.raises(LockNotHeldError):
            await lock.release(never)
        lease = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert lease is not None
        wrong_token = Lease(
            key=key, owner="a", token=lease.token + 1000, expires_at=lease.expires_at
        )
        with pytest.raises(LockNotHeldError):
            await lock.release(wrong_token)

    @pytest.mark.anyio
    async def test_expired_lease_lets_another_acquire(self, lock: LockProvider) -> None:
        key = _key()
        stale = await lock.acquire(key, owner="a", ttl=SHORT_TTL)
        assert stale is not None
        await anyio.sleep(SHORT_TTL * 2)
        current = await lock.acquire(key, owner="b", ttl=LONG_TTL)
        assert current is not None
        assert current.token > stale.token
        # The stale holder can neither free nor extend the new holder's lease.
        with pytest.raises(LockNotHeldError):
            await lock.release(stale)
        if cap.LEASE_RENEWAL in type(lock).capabilities:
            with pytest.raises(LockNotHeldError):
                await lock.renew(stale, ttl=LONG_TTL)
        assert await lock.acquire(key, owner="c", ttl=LONG_TTL) is None
        await lock.release(current)

    @pytest.mark.anyio
    async def test_waiting_acquire_gets_an_expired_key(self, lock: LockProvider) -> None:
        key = _key()
        assert await lock.acquire(key, owner="a", ttl=SHORT_TTL) is not None
        lease = await lock.acquire(key, owner="b", ttl=LONG_TTL, wait=5.0)
        assert lease is not None
        assert lease.owner == "b"

    @pytest.mark.anyio
    async def test_renew_extends_the_lease(self, lock: LockProvider) -> None:
        require(lock, cap.LEASE_RENEWAL)
        key = _key()
        lease = await lock.acquire(key, owner="a", ttl=0.4)
        assert lease is not None
        renewed = await lock.renew(lease, ttl=LONG_TTL)
        assert (renewed.key, renewed.owner, renewed.token) == (key, "a", lease.token)
        assert renewed.expires_at > lease.expires_at
        await anyio.sleep(0.8)  # well past the first expiry
        assert await lock.acquire(key, owner="b", ttl=LONG_TTL) is None
        await lock.release(renewed)
        assert await lock.acquire(key, owner="b", ttl=LONG_TTL) is not None

    @pytest.mark.anyio
    async def test_renew_after_release_is_refused(self, lock: LockProvider) -> None:
        require(lock, cap.LEASE_RENEWAL)
        lease = await lock.acquire(_key(), owner="a", ttl=LONG_TTL)
        assert lease is not None
        await lock.release(lease)
        with pytest.raises(LockNotHeldError):
            await lock.renew(lease, ttl=LONG_TTL)

    @pytest.mark.anyio
    async def test_fencing_tokens_increase(self, lock: LockProvider) -> None:
        key = _key()
        tokens = []
        for owner in ("a", "b", "a", "c"):
            lease = await lock.acquire(key, owner=owner, ttl=LONG_TTL)
            assert lease is not None
            tokens.append(lease.token)
            await lock.release(lease)
        expired = await lock.acquire(key, owner="d", ttl=SHORT_TTL)
        assert expired is not None
        tokens.append(expired.token)
        await anyio.sleep(SHORT_TTL * 2)
        last = await lock.acquire(key, owner="e", ttl=LONG_TTL)
        assert last is not None
        tokens.append(last.token)
        assert tokens == sorted(set(tokens)), f"tokens must strictly increase: {tokens}"

    @pytest.mark.anyio
    async def test_wait_acquires_when_released(self, lock: LockProvider) -> None:
        key = _key()
        held = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert held is not None

        async def release_soon() -> None:
            await anyio.sleep(0.2)
            await lock.release(held)

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_soon)
            with anyio.fail_after(10):
                lease = await lock.acquire(key, owner="b", ttl=LONG_TTL, wait=8.0)
        assert lease is not None
        assert lease.owner == "b"
        assert lease.token > held.token

    @pytest.mark.anyio
    async def test_wait_times_out_with_none(self, lock: LockProvider) -> None:
        key = _key()
        assert await lock.acquire(key, owner="a", ttl=LONG_TTL) is not None
        started = anyio.current_time()
        assert await lock.acquire(key, owner="b", ttl=LONG_TTL, wait=0.3) is None
        assert anyio.current_time() - started >= 0.2

    @pytest.mark.anyio
    async def test_only_one_of_many_concurrent_acquirers_wins(self, lock: LockProvider) -> None:
        key = _key()
        results: list[Lease | None] = []

        async def try_once(owner: str) -> None:
            results.append(await lock.acquire(key, owner=owner, ttl=LONG_TTL))

        async with anyio.create_task_group() as tg:
            for index in range(20):
                tg.start_soon(try_once, f"owner-{index}")
        assert len([lease for lease in results if lease is not None]) == 1

    @pytest.mark.anyio
    async def test_mutual_exclusion_under_contention(self, lock: LockProvider) -> None:
        key = _key()
        holders = 0
        most_holders = 0
        acquisitions = 0

        async def worker(owner: str) -> None:
            nonlocal holders, most_holders, acquisitions
            for _ in range(3):
                lease = await lock.acquire(key, owner=owner, ttl=LONG_TTL, wait=20.0)
                assert lease is not None, f"{owner} never got the lock"
                holders += 1
                acquisitions += 1
                most_holders = max(most_holders, holders)
                await anyio.sleep(0.005)
                holders -= 1
                await lock.release(lease)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for index in range(8):
                    tg.start_soon(worker, f"worker-{index}")
        assert most_holders == 1
        assert acquisitions == 24

    @pytest.mark.anyio
    async def test_leases_are_shared_between_providers(
        self, lock: LockProvider, other_lock: LockProvider | None
    ) -> None:
        require(lock, cap.DISTRIBUTED)
        if other_lock is None:
            pytest.skip("supply an `other_lock` fixture to check a distributed lock")
        key = _key()
        held = await lock.acquire(key, owner="a", ttl=LONG_TTL)
        assert held is not None
        assert await other_lock.acquire(key, owner="b", ttl=LONG_TTL) is None

        async def release_soon() -> None:
            await anyio.sleep(0.2)
            await lock.release(held)

        async with anyio.create_task_group() as tg:
            tg.start_soon(release_soon)
            with anyio.fail_after(10):
                taken = await other_lock.acquire(key, owner="b", ttl=LONG_TTL, wait=8.0)
        assert taken is not None
        assert taken.token > held.token
        with pytest.raises(LockNotHeldError):
            await lock.release(held)
        assert await lock.acquire(key, owner="c", ttl=LONG_TTL) is None

    @pytest.mark.anyio
    async def test_mutual_exclusion_between_providers(
        self, lock: LockProvider, other_lock: LockProvider | None
    ) -> None:
        require(lock, cap.DISTRIBUTED)
        if other_lock is None:
            pytest.skip("supply an `other_lock` fixture to check a distributed lock")
        key = _key()
        holders = 0
        most_holders = 0

        async def worker(provider: LockProvider, owner: str) -> None:
            nonlocal holders, most_holders
            for _ in range(3):
                lease = await provider.acquire(key, owner=owner, ttl=LONG_TTL, wait=20.0)
                assert lease is not None, f"{owner} never got the lock"
                holders += 1
                most_holders = max(most_holders, holders)
                await anyio.sleep(0.005)
                holders -= 1
                await provider.release(lease)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for index in range(6):
                    tg.start_soon(worker, (lock, other_lock)[index % 2], f"worker-{index}")
        assert most_holders == 1

    @pytest.mark.anyio
    async def test_matches_the_model(self, lock: LockProvider) -> None:
        """Random sequences of acquire/renew/release agree with a simple model."""
        machine = lock_state_machine(lock)
        await anyio.to_thread.run_sync(
            functools.partial(run_state_machine_as_test, machine, settings=MACHINE_SETTINGS)
        )


def lock_state_machine(lock: LockProvider) -> type[RuleBasedStateMachine]:
    """A state machine checking ``lock`` against a model of leases (no expiry: leases are long).

    Run it in a worker thread of the event loop that owns ``lock``
    (``anyio.to_thread.run_sync``); it calls the provider through ``anyio.from_thread.run``.
    """
    renewal = cap.LEASE_RENEWAL in type(lock).capabilities

    class LockMachine(RuleBasedStateMachine):
        leases = Bundle("leases")

        def __init__(self) -> None:
            super().__init__()
            # Fresh keys per run, so runs never see each other's leases.
            self.prefix = _key()
            self.holder: dict[str, tuple[str, int]] = {}  # key -> (owner, token)
            self.last_token: dict[str, int] = {}

        @rule(target=leases, key=st.sampled_from("xyz"), owner=st.sampled_from("abc"))
        def acquire(self, key: str, owner: str) -> Lease | None:
            lease: Lease | None = call(lock.acquire, self.prefix + key, owner=owner, ttl=60.0)
            if key in self.holder:
                assert lease is None, f"{key} is held by {self.holder[key]}, yet {owner} got it"
                return None
            assert lease is not None, f"{key} is free, yet {owner} did not get it"
            assert lease.token > self.last_token.get(key, -(2**63))
            self.holder[key] = (owner, lease.token)
            self.last_token[key] = lease.token
            return lease

        def _current(self, lease: Lease) -> bool:
            key = lease.key.removeprefix(self.prefix)
            return self.holder.get(key) == (lease.owner, lease.token)

        @rule(lease=leases)
        def release(self, lease: Lease | None) -> None:
            if lease is None:
                return
            if self._current(lease):
                call(lock.release, lease)
                del self.holder[lease.key.removeprefix(self.prefix)]
            else:
                try:
                    call(lock.release, lease)
                except LockNotHeldError:
                    pass
                else:
                    raise AssertionError(f"released a lease that is not current: {lease}")

        @rule(lease=leases)
        def renew(self, lease: Lease | None) -> None:
            if lease is None or not renewal:
                return
            if self._current(lease):
                renewed: Lease = call(lock.renew, lease, ttl=60.0)
                assert renewed.token == lease.token
            else:
                try:
                    call(lock.renew, lease, ttl=60.0)
                except LockNotHeldError:
                    pass
                else:
                    raise AssertionError(f"renewed a lease that is not current: {lease}")

    return LockMachine
