"""The provider contracts are enforced: an incomplete provider cannot be created, and
capabilities are a closed, typed set."""

from __future__ import annotations

from typing import Any

import pytest

from wfe_core.errors import AbstractProviderError, PluginError, ProviderContractError
from wfe_core.memory import (
    MemoryLifecycle,
    MemoryLock,
    MemoryPersistence,
    MemoryQueue,
    MemorySearch,
)
from wfe_core.plugins import ProviderKind, ProviderSpec
from wfe_core.providers import (
    LifecyclePublisher,
    LockProvider,
    PersistenceProvider,
    Provider,
    QueueProvider,
    SearchIndex,
    StepExecutor,
    capabilities,
)
from wfe_core.providers.capabilities import Capability, parse_capabilities

CONTRACTS = [PersistenceProvider, LockProvider, QueueProvider, SearchIndex, LifecyclePublisher]


def test_lock_provider_cannot_be_created() -> None:
    with pytest.raises(TypeError) as info:
        LockProvider()  # type: ignore[abstract]
    assert isinstance(info.value, AbstractProviderError)
    assert str(info.value) == (
        "wfe_core.providers._lock.LockProvider cannot be created: it does not implement "
        "LockProvider.acquire, LockProvider.release, LockProvider.renew"
    )


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.__name__)
def test_an_empty_subclass_of_any_contract_cannot_be_created(contract: type[Provider]) -> None:
    empty = type(f"Empty{contract.__name__}", (contract,), {"__module__": "third_party"})
    with pytest.raises(AbstractProviderError) as info:
        empty()
    message = str(info.value)
    assert message.startswith(f"third_party.Empty{contract.__name__} cannot be created: ")
    # Every abstract method is named, with the contract that declares it.
    for name in contract.__abstractmethods__:
        assert f"{contract.__name__}.{name}" in message


def test_an_empty_persistence_subclass_names_every_method_it_lacks() -> None:
    class Store(PersistenceProvider):
        pass

    with pytest.raises(AbstractProviderError) as info:
        Store()  # type: ignore[abstract]
    assert "PersistenceProvider.persist_workflow" in str(info.value)
    assert "PersistenceProvider.get_errors" in str(info.value)
    # get_pointers has a default; it is not part of what must be written.
    assert "get_pointers" not in str(info.value)


def test_a_lock_missing_only_renew_names_renew() -> None:
    class HalfLock(LockProvider):
        async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> Any:
            return None

        async def release(self, lease: Any) -> None:
            return None

    with pytest.raises(AbstractProviderError, match=r"does not implement LockProvider\.renew$"):
        HalfLock()  # type: ignore[abstract]


def test_a_step_executor_without_execute_cannot_be_created() -> None:
    class NoExecute(StepExecutor):
        pass

    with pytest.raises(AbstractProviderError, match=r"StepExecutor\.execute"):
        NoExecute()  # type: ignore[abstract]


def test_a_complete_subclass_takes_its_constructor_arguments() -> None:
    class Lock(MemoryLock):
        def __init__(self, label: str, *, extra: int = 0) -> None:
            super().__init__()
            self.label = (label, extra)

    assert Lock("a", extra=2).label == ("a", 2)


@pytest.mark.parametrize(
    "cls", [MemoryPersistence, MemoryLock, MemoryQueue, MemorySearch, MemoryLifecycle]
)
def test_every_memory_provider_is_complete(cls: type[Provider]) -> None:
    assert not cls.__abstractmethods__
    assert isinstance(cls(), Provider)


def test_capabilities_are_a_typed_enum_that_still_compares_as_strings() -> None:
    assert capabilities.DURABLE is Capability.DURABLE
    assert capabilities.FENCING == "fencing"
    assert "lease-renewal" in MemoryLock.capabilities
    assert all(isinstance(c, Capability) for c in MemoryQueue.capabilities)
    assert {c.value for c in Capability} == {
        "dequeue-blocks",
        "queue-redelivery",
        "lease-renewal",
        "distributed",
        "durable",
        "search-by-data",
        "asyncio-only",
        "fencing",
        "external-work",
        "remote",
        "leased-writes",
    }


def test_a_class_declaring_capabilities_as_strings_gets_them_converted() -> None:
    class Queue(MemoryQueue):
        capabilities = frozenset({"dequeue-blocks", "distributed"})  # type: ignore[assignment]

    assert Queue.capabilities == {Capability.DEQUEUE_BLOCKS, Capability.DISTRIBUTED}
    assert all(isinstance(c, Capability) for c in Queue.capabilities)


def test_a_class_declaring_an_unknown_capability_fails_when_defined() -> None:
    with pytest.raises(ProviderContractError) as info:

        class Queue(MemoryQueue):
            __module__ = "third_party"
            capabilities = frozenset({"dequeue-block"})  # type: ignore[assignment]

    assert str(info.value) == (
        "provider class third_party.test_a_class_declaring_an_unknown_capability_fails_when_"
        "defined.<locals>.Queue: unknown capability 'dequeue-block'; did you mean "
        "'dequeue-blocks'? (known: dequeue-blocks, queue-redelivery, lease-renewal, "
        "distributed, durable, search-by-data, asyncio-only, fencing, external-work, remote, "
        "leased-writes)"
    )


def test_a_spec_accepts_capability_strings_and_converts_them() -> None:
    spec = ProviderSpec(
        ProviderKind.QUEUE,
        "q",
        lambda url, options: MemoryQueue(),
        capabilities=frozenset({"dequeue-blocks", Capability.DURABLE}),
    )
    assert spec.capabilities == {Capability.DEQUEUE_BLOCKS, Capability.DURABLE}
    assert all(isinstance(c, Capability) for c in spec.capabilities)


def test_a_spec_with_an_unknown_capability_is_a_plugin_error() -> None:
    with pytest.raises(PluginError) as info:
        ProviderSpec(
            ProviderKind.SEARCH,
            "s",
            lambda url, options: MemorySearch(),
            capabilities=frozenset({"serch-by-data"}),
        )
    assert str(info.value).startswith(
        "ProviderSpec: unknown capability 'serch-by-data'; did you mean 'search-by-data'? "
        "(known: dequeue-blocks, "
    )


def test_a_lone_string_is_not_read_letter_by_letter() -> None:
    with pytest.raises(ProviderContractError, match="must be a set of names, got the string"):
        parse_capabilities("durable", where="here")
