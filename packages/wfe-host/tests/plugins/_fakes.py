"""Plugin objects for tests: providers of any kind under any name, built without a backend.

Loaded by path from each test directory's conftest (``--import-mode=importlib`` gives test
directories no package to import from). These are test doubles of *plugins*, not of
backends: they only record the URL and options the registry built them with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_host.plugins import PluginManager
from wfe_host.registry import PROVIDER_CLASSES, PluginRegistry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from wfe_host.registry import InstalledDistribution

ALL_KINDS = tuple(ProviderKind)


def _concrete(base: type) -> type:
    # The contracts' abstract methods are never called by the registry or resolve().
    cls = type(f"Fake{base.__name__}", (base,), {})
    cls.__abstractmethods__ = frozenset()
    return cls


_CLASSES = {kind: _concrete(base) for kind, base in PROVIDER_CLASSES.items()}


def build(kind: ProviderKind, name: str, url: str | None, options: Any) -> Any:
    provider = _CLASSES[kind]()
    provider.name = name
    provider.url = url
    provider.options = options
    return provider


@attrs.define
class PoolOptions:
    pool_size: int = 5
    echo: bool = False


class FakeBackend:
    """A plugin offering providers of ``kinds`` named ``name`` (like wfe-sqlite would)."""

    def __init__(
        self,
        name: str,
        kinds: Iterable[ProviderKind] = ALL_KINDS,
        schemes: tuple[str, ...] = (),
        options_class: type | None = None,
        factory: Callable[[str | None, Any], Any] | None = None,
    ) -> None:
        self.name = name
        self.kinds = tuple(kinds)
        self.schemes = schemes
        self.options_class = options_class
        self.factory = factory

    def _factory(self, kind: ProviderKind) -> Callable[[str | None, Any], Any]:
        if self.factory is not None:
            return self.factory
        return lambda url, options: build(kind, self.name, url, options)

    @hookimpl
    def register_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                kind,
                self.name,
                self._factory(kind),
                summary=f"{self.name} {kind}",
                url_schemes=self.schemes,
                options_class=self.options_class,
            )
            for kind in self.kinds
        ]


def memory_backend() -> FakeBackend:
    return FakeBackend("memory", schemes=("memory",))


def registry_of(
    *plugins: tuple[str, object, str | None],
    memory: bool = True,
    installed: Mapping[str, InstalledDistribution] | None = None,
) -> PluginRegistry:
    """A registry over a fresh manager holding (a stand-in for) memory and ``plugins``
    given as (name, plugin, distribution), in a world where only ``installed`` is installed."""
    pm = PluginManager()
    if memory:
        pm.register_plugin(
            memory_backend(), "memory", distribution="wfe-core", version="0.1.0", builtin=True
        )
    for name, plugin, distribution in plugins:
        pm.register_plugin(
            plugin, name, distribution=distribution, version="1.0" if distribution else None
        )
    world = dict(installed or {})
    return PluginRegistry(pm, installed=world.get)


SQLITE = (
    "sqlite",
    FakeBackend(
        "sqlite",
        [ProviderKind.PERSISTENCE, ProviderKind.LOCK, ProviderKind.QUEUE],
        ("sqlite",),
        PoolOptions,
    ),
    "wfe-sqlite",
)
POSTGRES = (
    "postgres",
    FakeBackend("postgres", [ProviderKind.PERSISTENCE], ("postgresql", "postgres"), PoolOptions),
    "wfe-postgres",
)
VALKEY = (
    "valkey",
    FakeBackend(
        "valkey",
        [ProviderKind.LOCK, ProviderKind.QUEUE, ProviderKind.LIFECYCLE],
        ("valkey", "redis"),
    ),
    "wfe-valkey",
)
OPENSEARCH = (
    "opensearch",
    FakeBackend("opensearch", [ProviderKind.SEARCH], ("http", "https")),
    "wfe-opensearch",
)
