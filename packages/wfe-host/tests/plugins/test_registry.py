"""The provider registry: lookups by name and URL, clear errors, building providers."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import attrs
import pytest

from wfe_core import hookimpl
from wfe_core.errors import ConfigurationError, PluginError, ProviderNotFoundError
from wfe_core.plugins import (
    DefinitionFormatSpec,
    ProviderKind,
    ProviderSpec,
    StepExecutorSpec,
)
from wfe_core.providers import PersistenceProvider
from wfe_host.plugins import PluginLoadOptions, make_plugin_manager
from wfe_host.registry import (
    InstalledDistribution,
    PluginRegistry,
    default_registry,
    redact_url,
    reset_default_registry,
)
from wfe_host.settings import ProviderSettings, SettingsError

PERSISTENCE = ProviderKind.PERSISTENCE


def test_providers_carry_their_plugin_and_distribution(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    sqlite = registry.provider("persistence", "sqlite")
    assert (sqlite.plugin, sqlite.distribution, sqlite.version) == ("sqlite", "wfe-sqlite", "1.0")
    assert sqlite.spec.url_schemes == ("sqlite",)
    listed = [(p.kind.value, p.name) for p in registry.providers()]
    assert listed[:3] == [("persistence", "memory"), ("persistence", "sqlite"), ("lock", "memory")]
    assert [p.name for p in registry.providers(ProviderKind.QUEUE)] == ["memory", "sqlite"]
    assert [p.name for p in registry.providers("search")] == ["memory"]


def test_the_real_builtin_plugin_offers_memory_for_every_kind() -> None:
    registry = PluginRegistry(make_plugin_manager(options=PluginLoadOptions(autoload=False)))
    assert {(p.kind, p.name) for p in registry.providers()} == {
        (kind, "memory") for kind in ProviderKind
    }
    assert all(p.distribution == "wfe-core" for p in registry.providers())


def test_unknown_name_lists_installed_names_and_the_distribution_to_install(fakes) -> None:
    registry = fakes.registry_of()
    with pytest.raises(ProviderNotFoundError) as info:
        registry.provider("persistence", "sqlite")
    assert str(info.value) == (
        "unknown persistence provider 'sqlite'; installed: memory. "
        "Install it with: pip install wfe-sqlite"
    )
    with pytest.raises(ProviderNotFoundError) as info:
        registry.provider("search", "opensearch")
    assert str(info.value).endswith("Install it with: pip install wfe-opensearch")


def test_unknown_name_without_a_known_distribution_lists_installed_names(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    with pytest.raises(ProviderNotFoundError) as info:
        registry.provider("lock", "zookeeper")
    assert str(info.value) == "unknown lock provider 'zookeeper'; installed: memory, sqlite"


def test_an_installed_distribution_that_registers_nothing_says_so_with_its_version(
    fakes,
) -> None:
    # `pip install wfe-postgres` of a version that ships no provider must not be told, again,
    # to `pip install wfe-postgres`.
    packaging_only = {"wfe-postgres": InstalledDistribution("0.1.0", has_plugin=False)}
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of(installed=packaging_only).provider_for_url(
            "persistence", "postgresql://db/wfe"
        )
    assert str(info.value).endswith(
        "installed: memory (memory://). wfe-postgres 0.1.0 is installed but registers no "
        "postgres persistence provider: that version ships no plugin (see its README for what "
        "it provides)"
    )
    assert "pip install" not in str(info.value)


def test_an_installed_plugin_that_is_not_loaded_points_at_the_plugin_switches(fakes) -> None:
    not_loaded = {"wfe-sqlite": InstalledDistribution("0.1.0", has_plugin=True)}
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of(installed=not_loaded).provider("queue", "sqlite")
    assert str(info.value) == (
        "unknown queue provider 'sqlite'; installed: memory. wfe-sqlite 0.1.0 is installed but "
        "registers no sqlite queue provider: its plugin is not loaded (see "
        "WFE_DISABLE_PLUGIN_AUTOLOAD, WFE_PLUGINS and WFE_BLOCK_PLUGINS; `wfe plugins` lists "
        "what is loaded)"
    )


def test_the_real_lookup_sees_the_installed_wfe_sqlite_whose_plugin_is_off() -> None:
    # This session installs wfe-sqlite; with autoloading off its plugin is not loaded.
    version = importlib.metadata.version("wfe-sqlite")
    registry = PluginRegistry(make_plugin_manager(options=PluginLoadOptions(autoload=False)))
    with pytest.raises(ProviderNotFoundError) as info:
        registry.provider("persistence", "sqlite")
    assert f"wfe-sqlite {version} is installed but registers no sqlite persistence" in str(
        info.value
    )
    assert "its plugin is not loaded" in str(info.value)


@pytest.mark.parametrize(
    ("kind", "typo", "meant"),
    [
        ("persistence", "sqlit", "sqlite"),  # installed
        ("persistence", "memroy", "memory"),  # installed
        ("persistence", "postgress", "postgres"),  # published, not installed
        ("lock", "valkye", "valkey"),
    ],
)
def test_a_typo_gets_did_you_mean(fakes, kind: str, typo: str, meant: str) -> None:
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of(fakes.SQLITE).provider(kind, typo)
    assert str(info.value).endswith(f". Did you mean {meant!r}?")


def test_a_step_type_typo_gets_did_you_mean(fakes) -> None:
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of().step_executor("shel")
    assert str(info.value) == "unknown step type 'shel'; installed: none. Did you mean 'shell'?"


def test_a_known_provider_of_another_kind_says_what_it_provides(fakes) -> None:
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of().provider("persistence", "valkey")
    assert str(info.value) == (
        "unknown persistence provider 'valkey'; installed: memory. "
        "'valkey' (wfe-valkey) provides lock, queue, lifecycle, not persistence"
    )
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of(fakes.VALKEY).provider("persistence", "valkey")
    assert str(info.value).endswith(
        "'valkey' is installed but provides lock, queue, lifecycle, not persistence"
    )


@pytest.mark.parametrize(
    ("kind", "url", "name"),
    [
        ("persistence", "sqlite:///wfe.db", "sqlite"),
        ("persistence", "SQLITE:///wfe.db", "sqlite"),
        ("persistence", "postgresql://user@db/wfe", "postgres"),
        ("persistence", "postgres://user@db/wfe", "postgres"),
        ("lock", "valkey://cache:6379/0", "valkey"),
        ("queue", "redis://cache:6379/0", "valkey"),
        ("search", "https://search:9200", "opensearch"),
        ("search", "http://search:9200", "opensearch"),
        ("lifecycle", "memory://", "memory"),
    ],
)
def test_url_scheme_selects_the_provider(fakes, kind: str, url: str, name: str) -> None:
    registry = fakes.registry_of(fakes.SQLITE, fakes.POSTGRES, fakes.VALKEY, fakes.OPENSEARCH)
    assert registry.provider_for_url(kind, url).name == name


def test_unknown_scheme_names_the_distribution_and_hides_the_password(fakes) -> None:
    with pytest.raises(ProviderNotFoundError) as info:
        fakes.registry_of().provider_for_url("persistence", "postgresql://wfe:s3cret@db/wfe")
    assert str(info.value) == (
        "no persistence provider for URL scheme 'postgresql' (postgresql://wfe:***@db/wfe); "
        "installed: memory (memory://). Install it with: pip install wfe-postgres"
    )
    assert "s3cret" not in str(info.value)


def test_a_string_that_is_not_a_url_is_a_configuration_error(fakes) -> None:
    with pytest.raises(ConfigurationError, match=r"'wfe\.db' is not a URL; expected <scheme>://"):
        fakes.registry_of().provider_for_url("persistence", "wfe.db")


def test_a_scheme_claimed_by_two_providers_asks_for_a_name(fakes) -> None:
    other = ("redis2", fakes.FakeBackend("redis2", [ProviderKind.LOCK], ("redis",)), "wfe-redis2")
    registry = fakes.registry_of(fakes.VALKEY, other)
    with pytest.raises(ConfigurationError) as info:
        registry.provider_for_url("lock", "redis://cache")
    assert "is claimed by 'redis2' (plugin 'redis2', wfe-redis2 1.0) and 'valkey'" in str(
        info.value
    )
    assert str(info.value).endswith("set lock.provider to choose one")
    assert registry.provider("lock", "redis2").name == "redis2"


def test_the_same_provider_from_two_plugins_is_an_error_naming_both(fakes) -> None:
    twin = ("sqlite-fork", fakes.FakeBackend("sqlite", [PERSISTENCE]), "wfe-sqlite-fork")
    with pytest.raises(PluginError) as info:
        fakes.registry_of(fakes.SQLITE, twin)
    assert str(info.value) == (
        "persistence provider 'sqlite' is offered twice: by plugin 'sqlite', wfe-sqlite 1.0 and "
        "by plugin 'sqlite-fork', wfe-sqlite-fork 1.0; uninstall one of them or block one with "
        "WFE_BLOCK_PLUGINS"
    )


def test_a_hook_that_raises_is_reported_with_its_plugin(fakes) -> None:
    class Broken:
        @hookimpl
        def register_providers(self) -> list[ProviderSpec]:
            raise RuntimeError("driver missing")

    with pytest.raises(PluginError) as info:
        fakes.registry_of(("broken", Broken(), "wfe-broken"))
    assert str(info.value) == (
        "plugin 'broken' (wfe-broken 1.0) failed in register_providers: "
        "RuntimeError: driver missing"
    )
    assert isinstance(info.value.__cause__, RuntimeError)


def test_a_hook_returning_the_wrong_records_is_reported(fakes) -> None:
    class Wrong:
        @hookimpl
        def register_providers(self) -> list[Any]:
            return [{"name": "sqlite"}]

    with pytest.raises(PluginError) as info:
        fakes.registry_of(("wrong", Wrong(), None))
    assert str(info.value) == (
        "plugin 'wrong': register_providers returned dict, expected ProviderSpec"
    )


def test_create_structures_options_and_calls_the_factory(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    built = registry.create(
        "persistence", ProviderSettings(url="sqlite:///x.db", options={"pool_size": "7"})
    )
    assert isinstance(built, PersistenceProvider)
    assert built.url == "sqlite:///x.db"
    assert built.options == fakes.PoolOptions(pool_size=7)
    default = registry.create("lock", ProviderSettings(provider="sqlite"))
    assert default.options == fakes.PoolOptions()


def test_create_reports_bad_options_with_their_field_path(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    settings = ProviderSettings(provider="sqlite", options={"pool_size": "many", "colour": "red"})
    with pytest.raises(SettingsError) as info:
        registry.create("persistence", settings)
    assert {(p.path, p.message) for p in info.value.problems} == {
        ("persistence.options.colour", "unknown key"),
        ("persistence.options.pool_size", "expected an integer, got 'many'"),
    }


def test_options_for_a_provider_without_options_are_an_error(fakes) -> None:
    with pytest.raises(SettingsError) as info:
        fakes.registry_of().create("queue", ProviderSettings("memory", None, {"size": 3}))
    assert str(info.value) == (
        "queue.options.size: unknown key (the queue provider 'memory' takes no options)"
    )


def test_create_without_a_provider_or_url_says_what_to_set(fakes) -> None:
    with pytest.raises(ConfigurationError, match=r"^search: no provider selected; set "):
        fakes.registry_of().create("search", ProviderSettings())


def test_factory_failures_are_wrapped_with_the_provider_named(fakes) -> None:
    def needs_driver(url: str | None, options: Any) -> Any:
        import wfe_no_such_driver  # type: ignore[import-not-found]  # noqa: F401

    def rejects(url: str | None, options: Any) -> Any:
        raise ValueError("port must be a number")

    def wrong_type(url: str | None, options: Any) -> Any:
        return object()

    for name, factory in [("a", needs_driver), ("b", rejects), ("c", wrong_type)]:
        backend = fakes.FakeBackend(name, [PERSISTENCE], factory=factory)
        registry = fakes.registry_of((name, backend, f"wfe-{name}"))
        settings = ProviderSettings(provider=name)
        if name == "a":
            with pytest.raises(PluginError) as info:
                registry.create(PERSISTENCE, settings)
            assert str(info.value) == (
                "persistence provider 'a' (plugin 'a', wfe-a 1.0) cannot import what it needs: "
                "No module named 'wfe_no_such_driver'"
            )
        elif name == "b":
            with pytest.raises(ConfigurationError) as info:
                registry.create(PERSISTENCE, settings)
            assert str(info.value) == (
                "persistence: provider 'b' (plugin 'b', wfe-b 1.0) rejected its settings: "
                "ValueError: port must be a number"
            )
        else:
            with pytest.raises(PluginError) as info:
                registry.create(PERSISTENCE, settings)
            assert str(info.value) == (
                "persistence provider 'c' (plugin 'c', wfe-c 1.0) built a object, which is not "
                "a PersistenceProvider"
            )


class Formats:
    @hookimpl
    def register_step_executors(self) -> list[StepExecutorSpec]:
        return [StepExecutorSpec("shell", lambda: None, summary="Runs a shell script")]  # type: ignore[arg-type,return-value]

    @hookimpl
    def register_definition_formats(self) -> list[DefinitionFormatSpec]:
        return [
            DefinitionFormatSpec("yaml", (".yaml", "yml"), lambda path, config: []),
            DefinitionFormatSpec("pipeline", (".pipeline.yaml",), lambda path, config: []),
        ]


def test_step_executors_and_definition_formats(fakes) -> None:
    registry = fakes.registry_of(("yaml", Formats(), "wfe-yaml"))
    assert [s.name for s in registry.step_executors()] == ["shell"]
    shell = registry.step_executor("shell")
    assert (shell.plugin, shell.distribution) == ("yaml", "wfe-yaml")
    assert registry.definition_format_for("flows/order.yaml").name == "yaml"
    assert registry.definition_format_for(Path("ORDER.YML")).name == "yaml"
    # the longest matching suffix wins
    assert registry.definition_format_for("ci.pipeline.yaml").name == "pipeline"
    assert [f.suffixes for f in registry.definition_formats()] == [
        (".yaml", ".yml"),
        (".pipeline.yaml",),
    ]


def test_unknown_step_types_and_formats_name_the_distribution(fakes) -> None:
    registry = fakes.registry_of()
    with pytest.raises(ProviderNotFoundError) as info:
        registry.step_executor("deno")
    assert str(info.value) == (
        "unknown step type 'deno'; installed: none. Install it with: pip install wfe-yaml"
    )
    with pytest.raises(ProviderNotFoundError) as info:
        registry.definition_format_for("flow.yaml")
    assert str(info.value) == (
        "no definition format for 'flow.yaml'; installed suffixes: none. "
        "Install it with: pip install wfe-yaml"
    )


def test_a_step_type_or_suffix_claimed_twice_is_an_error(fakes) -> None:
    with pytest.raises(PluginError) as info:
        fakes.registry_of(("a", Formats(), "wfe-a"), ("b", Formats(), "wfe-b"))
    assert str(info.value) == (
        "step type 'shell' is offered twice: by plugin 'a', wfe-a 1.0 and by plugin 'b', wfe-b 1.0"
    )

    class MoreYaml:
        @hookimpl
        def register_definition_formats(self) -> list[DefinitionFormatSpec]:
            return [DefinitionFormatSpec("other", (".YAML",), lambda path, config: [])]

    with pytest.raises(PluginError) as info:
        fakes.registry_of(("a", Formats(), "wfe-a"), ("c", MoreYaml(), None))
    assert str(info.value) == (
        "definition file suffix '.yaml' is claimed twice: by plugin 'a', wfe-a 1.0 and by "
        "plugin 'c'"
    )


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db?x=1") == "postgresql://u:***@h:5432/db?x=1"
    assert redact_url("sqlite:///wfe.db") == "sqlite:///wfe.db"


def test_default_registry_is_built_once_and_can_be_reset() -> None:
    reset_default_registry()
    try:
        first = default_registry()
        assert default_registry() is first
        reset_default_registry()
        assert default_registry() is not first
    finally:
        reset_default_registry()


def test_a_required_option_that_is_missing_is_named(fakes) -> None:
    @attrs.define
    class NeedsPath:
        path: str
        mode: int = 0o644

    backend = fakes.FakeBackend("files", [ProviderKind.LIFECYCLE], options_class=NeedsPath)
    registry = fakes.registry_of(("files", backend, None))
    with pytest.raises(SettingsError) as info:
        registry.create("lifecycle", ProviderSettings(provider="files"))
    assert str(info.value) == "lifecycle.options.path: is required"
    built = registry.create("lifecycle", ProviderSettings("files", None, {"path": "/x"}))
    assert built.options == NeedsPath("/x")
