"""A plugin whose provider breaks its contract fails when the host is created, with one
error naming the plugin, the class and what is wrong; never mid-run."""

from __future__ import annotations

from typing import Any

import pytest

from wfe_core import hookimpl
from wfe_core.errors import AbstractProviderError, ProviderContractError
from wfe_core.memory import MemoryLock, MemoryQueue
from wfe_core.plugins import ProviderKind, ProviderSpec
from wfe_core.providers import Lease, LockProvider
from wfe_core.providers.capabilities import Capability
from wfe_host import WorkflowHost
from wfe_host.settings import ProviderSettings


class HalfLock(LockProvider):
    """A lock that forgot ``renew``."""

    capabilities = frozenset({Capability.LEASE_RENEWAL})

    async def acquire(self, key: str, *, owner: str, ttl: float, wait: float = 0.0) -> None:
        return None

    async def release(self, lease: Lease) -> None:
        return None


class Plugin:
    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec

    @hookimpl
    def register_providers(self) -> list[ProviderSpec]:
        return [self.spec]


def test_a_provider_missing_renew_fails_when_the_host_is_created(register_plugin) -> None:
    spec = ProviderSpec(
        ProviderKind.LOCK,
        "half",
        lambda url, options: HalfLock(),  # type: ignore[abstract]
        capabilities=frozenset({"lease-renewal"}),
    )
    register_plugin(Plugin(spec), "halfplugin")
    with pytest.raises(AbstractProviderError) as info:
        WorkflowHost.from_settings({"lock": {"provider": "half"}})
    assert str(info.value) == (
        "lock provider 'half' (plugin 'halfplugin'): "
        f"{__name__}.HalfLock cannot be created: it does not implement LockProvider.renew"
    )
    assert isinstance(info.value, TypeError)


def test_an_unknown_capability_string_names_the_plugin_and_the_known_ones(
    register_plugin,
) -> None:
    class Typo:
        @hookimpl
        def register_providers(self) -> list[ProviderSpec]:
            return [
                ProviderSpec(
                    ProviderKind.QUEUE,
                    "typo",
                    lambda url, options: MemoryQueue(),
                    capabilities=frozenset({"dequeue-block"}),
                )
            ]

    with pytest.raises(ProviderContractError) as info:
        register_plugin(Typo(), "typo")
    assert str(info.value) == (
        "plugin 'typo': register_providers: ProviderSpec: unknown capability 'dequeue-block'; "
        "did you mean 'dequeue-blocks'? (known: dequeue-blocks, queue-redelivery, "
        "lease-renewal, distributed, durable, search-by-data, asyncio-only, fencing, external-work,"
        " remote, leased-writes)"
    )


def test_capability_strings_in_a_spec_equal_to_the_class_are_accepted(register_plugin) -> None:
    spec = ProviderSpec(
        ProviderKind.QUEUE,
        "strings",
        lambda url, options: MemoryQueue(),
        capabilities=frozenset({"dequeue-blocks", "queue-redelivery"}),
    )
    registry = register_plugin(Plugin(spec), "strings")
    assert registry.provider("queue", "strings").spec.capabilities == MemoryQueue.capabilities
    assert isinstance(registry.create("queue", ProviderSettings(provider="strings")), MemoryQueue)


@pytest.mark.parametrize(
    ("declared", "difference"),
    [
        (frozenset(), "only the class declares lease-renewal"),
        (
            frozenset({"lease-renewal", "distributed", "durable"}),
            "only the spec declares distributed, durable",
        ),
    ],
)
def test_a_spec_whose_capabilities_differ_from_its_class_fails_when_created(
    register_plugin, declared: frozenset[str], difference: str
) -> None:
    spec = ProviderSpec(
        ProviderKind.LOCK, "drift", lambda url, options: MemoryLock(), capabilities=declared
    )
    registry = register_plugin(Plugin(spec), "drift")
    with pytest.raises(ProviderContractError) as info:
        registry.create("lock", ProviderSettings(provider="drift"))
    assert str(info.value) == (
        "lock provider 'drift' (plugin 'drift'): its ProviderSpec's capabilities differ from "
        f"those of its class wfe_core.memory._lock.MemoryLock ({difference}); make them equal"
    )


def test_a_factory_defining_a_class_with_an_unknown_capability_names_the_plugin(
    register_plugin,
) -> None:
    def factory(url: str | None, options: Any) -> Any:
        # What a plugin's lazily imported provider module does when it is imported.
        class Lock(MemoryLock):
            capabilities = frozenset({"lease-renewals"})  # type: ignore[assignment]

        return Lock()

    spec = ProviderSpec(ProviderKind.LOCK, "late", factory)
    registry = register_plugin(Plugin(spec), "late")
    with pytest.raises(ProviderContractError) as info:
        registry.create("lock", ProviderSettings(provider="late"))
    message = str(info.value)
    assert message.startswith("lock provider 'late' (plugin 'late'): provider class ")
    assert "unknown capability 'lease-renewals'; did you mean 'lease-renewal'?" in message
