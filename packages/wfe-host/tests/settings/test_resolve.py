"""resolve(): from settings to built providers, through the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe_core.errors import ConfigurationError, ProviderNotFoundError
from wfe_core.plugins import ProviderKind
from wfe_core.providers import LifecyclePublisher, LockProvider, PersistenceProvider
from wfe_host.bootstrap import ResolvedSettings, resolve
from wfe_host.options import HostOptions
from wfe_host.settings import SettingsError


def names(resolved: ResolvedSettings) -> dict[str, str | None]:
    s = resolved.settings
    return {
        c: getattr(s, c).provider for c in ("persistence", "lock", "queue", "search", "lifecycle")
    }


def test_nothing_set_is_memory_everywhere_and_no_search(fakes) -> None:
    resolved = resolve(environ={}, registry=fakes.registry_of())
    assert names(resolved) == {
        "persistence": "memory",
        "lock": "memory",
        "queue": "memory",
        "search": None,
        "lifecycle": "memory",
    }
    assert resolved.search is None
    assert isinstance(resolved.persistence, PersistenceProvider)
    assert isinstance(resolved.lock, LockProvider)
    assert isinstance(resolved.lifecycle, LifecyclePublisher)
    assert resolved.options == HostOptions()


def test_lock_and_queue_follow_persistence_when_it_offers_them(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    resolved = resolve({"persistence": "sqlite:///wfe.db"}, environ={}, registry=registry)
    assert names(resolved)["lock"] == "sqlite"
    assert names(resolved)["queue"] == "sqlite"
    assert resolved.lock.url == "sqlite:///wfe.db"  # the same database
    assert resolved.queue.url == "sqlite:///wfe.db"
    assert resolved.lifecycle.name == "memory"  # sqlite offers no lifecycle


def test_lock_and_queue_are_memory_when_persistence_does_not_offer_them(fakes) -> None:
    registry = fakes.registry_of(fakes.POSTGRES)
    resolved = resolve(persistence="postgresql://db/wfe", environ={}, registry=registry)
    assert names(resolved)["persistence"] == "postgres"
    assert (resolved.lock.name, resolved.queue.name) == ("memory", "memory")
    assert resolved.lock.url is None


def test_each_concern_can_be_chosen_by_name_or_url(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE, fakes.VALKEY, fakes.OPENSEARCH)
    resolved = resolve(
        {
            "persistence": "sqlite:///wfe.db",
            "lock": "valkey://cache/0",
            "queue": {"provider": "valkey", "url": "valkey://cache/1"},
            "search": "https://search:9200",
            "lifecycle": "redis://cache/2",
        },
        environ={},
        registry=registry,
    )
    assert names(resolved) == {
        "persistence": "sqlite",
        "lock": "valkey",
        "queue": "valkey",
        "search": "opensearch",
        "lifecycle": "valkey",
    }
    assert resolved.queue.url == "valkey://cache/1"
    assert resolved.search is not None
    assert resolved.search.url == "https://search:9200"


def test_options_are_structured_into_the_providers_options_class(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    resolved = resolve(
        {"persistence": {"url": "sqlite:///wfe.db", "options": {"pool_size": 2}}},
        environ={"WFE_PERSISTENCE_OPTIONS": '{"echo": "yes"}'},
        registry=registry,
    )
    assert resolved.persistence.options == fakes.PoolOptions(pool_size=2, echo=True)
    # the lock followed persistence's provider, URL and (same class) options: one backend
    assert resolved.lock.options == fakes.PoolOptions(pool_size=2, echo=True)


def test_a_following_concerns_own_options_win(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    resolved = resolve(
        {
            "persistence": {"url": "sqlite:///wfe.db", "options": {"pool_size": 2}},
            "lock": {"options": {"pool_size": 7}},
        },
        environ={},
        registry=registry,
    )
    assert resolved.lock.url == "sqlite:///wfe.db"
    assert resolved.lock.options == fakes.PoolOptions(pool_size=7)


def test_host_options_come_through(fakes) -> None:
    resolved = resolve(
        host={"concurrency": 3}, environ={"WFE_HOST_WORKER_ID": "w1"}, registry=fakes.registry_of()
    )
    assert resolved.options == HostOptions(concurrency=3, worker_id="w1")
    assert resolved.settings.host is resolved.options


def test_an_unknown_provider_names_its_source_and_the_distribution(fakes) -> None:
    registry = fakes.registry_of()
    with pytest.raises(ProviderNotFoundError) as info:
        resolve(environ={"WFE_PERSISTENCE": "sqlite"}, registry=registry)
    assert str(info.value) == (
        "environment WFE_PERSISTENCE: unknown persistence provider 'sqlite'; installed: memory. "
        "Install it with: pip install wfe-sqlite"
    )
    with pytest.raises(ProviderNotFoundError) as info:
        resolve({"queue": "redis://cache"}, environ={}, registry=registry)
    assert str(info.value) == (
        "settings: no queue provider for URL scheme 'redis' (redis://cache); installed: "
        "memory (memory://). Install it with: pip install wfe-valkey"
    )


def test_bad_provider_options_name_the_field_path_and_source(fakes) -> None:
    Path("wfe.toml").write_text(
        '[persistence]\nurl = "sqlite:///wfe.db"\noptions = { pool_sise = 3 }\n', encoding="utf-8"
    )
    with pytest.raises(SettingsError) as info:
        resolve(environ={}, registry=fakes.registry_of(fakes.SQLITE))
    assert str(info.value) == "wfe.toml: persistence.options.pool_sise: unknown key"


def test_search_options_without_a_search_provider_are_an_error(fakes) -> None:
    with pytest.raises(SettingsError) as info:
        resolve({"search": {"options": {"index": "wfe"}}}, environ={}, registry=fakes.registry_of())
    assert str(info.value) == (
        "settings: search.options: options are set but no search provider is selected; set "
        "search.provider or search.url"
    )


def test_the_settings_file_path_can_be_the_source(fakes, tmp_path: Path) -> None:
    file = tmp_path / "prod.toml"
    file.write_text('persistence = "sqlite:///prod.db"\n[host]\nconcurrency = 0\n', "utf-8")
    with pytest.raises(SettingsError) as info:
        resolve(file, environ={}, registry=fakes.registry_of(fakes.SQLITE))
    assert str(info.value) == f"{file}: host.concurrency: must be >= 1, got 0"
    resolved = resolve(
        file,
        environ={"WFE_HOST_CONCURRENCY": "5"},
        registry=fakes.registry_of(fakes.SQLITE),
    )
    assert (resolved.persistence.url, resolved.options.concurrency) == ("sqlite:///prod.db", 5)


def test_callers_defaults_sit_below_every_source(fakes) -> None:
    registry = fakes.registry_of(fakes.SQLITE)
    defaults = {"persistence": "sqlite:///default.db"}
    assert resolve(environ={}, registry=registry, defaults=defaults).persistence.url == (
        "sqlite:///default.db"
    )
    resolved = resolve(environ={"WFE_PERSISTENCE": "memory"}, registry=registry, defaults=defaults)
    assert resolved.persistence.name == "memory"


def test_the_origins_of_values_are_kept(fakes) -> None:
    resolved = resolve(
        {"lock": "memory"},
        environ={"WFE_PERSISTENCE": "memory"},
        registry=fakes.registry_of(),
    )
    assert resolved.origins["persistence.provider"] == "environment WFE_PERSISTENCE"
    assert resolved.origins["lock.provider"] == "settings"


def test_a_plugin_registered_for_one_test_is_seen_by_resolve(fakes, register_plugin) -> None:
    # register_plugin (see conftest) makes the registry the process default for this test.
    backend = fakes.FakeBackend("mydb", [ProviderKind.PERSISTENCE], ("mydb",))
    register_plugin(backend, "mydb")
    resolved = resolve(persistence="mydb://somewhere")
    assert resolved.persistence.name == "mydb"


def test_without_a_registry_the_environment_decides_which_plugins_load() -> None:
    environ = {"WFE_DISABLE_PLUGIN_AUTOLOAD": "1", "WFE_LIFECYCLE": "jsonl:///tmp/e.jsonl"}
    with pytest.raises(ConfigurationError, match="no lifecycle provider for URL scheme 'jsonl'"):
        resolve(environ=environ)


def test_the_real_memory_providers_are_the_library_default() -> None:
    resolved = resolve(environ={"WFE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert names(resolved)["persistence"] == "memory"
    assert resolved.persistence.capabilities is not None
