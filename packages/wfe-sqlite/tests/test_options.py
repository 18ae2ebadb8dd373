"""URL forms, options and the plugin's registration."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_core.plugins import ProviderKind
from wfe_core.providers import Provider
from wfe_core.providers import capabilities as cap
from wfe_sqlite import SqliteLock, SqliteOptions, SqlitePersistence, SqliteQueue, parse_url
from wfe_sqlite import plugin as sqlite_plugin
from wfe_sqlite.options import MEMORY

if TYPE_CHECKING:
    from pathlib import Path


def test_relative_path_is_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = parse_url("sqlite:///data/wfe.db")
    assert target.path == str((tmp_path / "data" / "wfe.db").resolve())
    assert not target.is_memory


def test_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "abs.db"
    assert parse_url(f"sqlite:///{path}").path == str(path.resolve())
    assert str(path).startswith("/")  # so the URL above had four slashes


def test_memory_forms() -> None:
    for url in ("sqlite:///:memory:", "sqlite://"):
        target = parse_url(url)
        assert target.path == MEMORY
        assert target.is_memory


def test_default_url_is_wfe_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url(None).path == str((tmp_path / "wfe.db").resolve())


def test_query_parameters_override_options(tmp_path: Path) -> None:
    target = parse_url(
        f"sqlite:///{tmp_path}/x.db?synchronous=normal&busy_timeout=2.5&read_connections=2",
        SqliteOptions(max_batch_size=7),
    )
    assert target.options == SqliteOptions(
        synchronous="normal", busy_timeout=2.5, read_connections=2, max_batch_size=7
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://localhost/wfe", "scheme must be 'sqlite'"),
        ("sqlite://host/wfe.db", "a host ('host') is not allowed"),
        ("sqlite:///wfe.db?colour=blue", "unknown parameter 'colour'"),
        ("sqlite:///wfe.db?busy_timeout=soon", "busy_timeout='soon' is not a valid float"),
        ("sqlite:///wfe.db?busy_timeout=-1", "busy_timeout must be a finite number of seconds > 0"),
        ("sqlite:///wfe.db?busy_timeout=inf", "busy_timeout must be a finite .* got inf"),
        ("sqlite:///wfe.db?busy_timeout=nan", "busy_timeout must be a finite .* got nan"),
        ("sqlite:///wfe.db?poll_interval=1e12", "poll_interval must be .* at most 86400"),
        ("sqlite:///wfe.db?synchronous=off", "synchronous must be one of full, normal, extra"),
        ("sqlite:///wfe.db#frag", "fragment"),
        ("sqlite:///some/dir/", "names a directory"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SqlitePersistence(url)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"synchronous": "sometimes"}, "synchronous must be one of"),
        ({"busy_timeout": 0}, "busy_timeout must be a finite number of seconds > 0"),
        ({"busy_timeout": float("inf")}, "busy_timeout must be a finite number"),
        ({"max_poll_interval": 86_401}, "max_poll_interval must be .* at most 86400, got 86401"),
        ({"read_connections": 0}, "read_connections must be an integer of at least 1"),
        ({"max_batch_size": 1.5}, "max_batch_size must be an integer"),
        ({"poll_interval": 0.5, "max_poll_interval": 0.1}, "must not be smaller"),
    ],
)
def test_bad_options_are_configuration_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SqliteOptions(**fields)  # type: ignore[arg-type]


def test_options_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="SqliteOptions"):
        SqliteQueue("sqlite:///:memory:", {"busy_timeout": 1})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_unopened_provider_says_so() -> None:
    persistence = SqlitePersistence("sqlite:///:memory:")
    with pytest.raises(ProviderError, match="not open"):
        await persistence.get_workflow("x")


@pytest.mark.anyio
async def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="cannot create the directory"):
        async with SqlitePersistence(f"sqlite:///{blocker}/sub/wfe.db"):
            pass


@pytest.mark.anyio
async def test_a_file_that_is_not_a_database_is_a_provider_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a SQLite database, not at all" * 100)
    with pytest.raises(ProviderError, match=r"SQLite opening database .* failed"):
        async with SqlitePersistence(f"sqlite:///{path}"):
            pass


def test_plugin_registers_three_providers_named_sqlite() -> None:
    specs = sqlite_plugin.register_providers()
    assert {spec.kind for spec in specs} == {
        ProviderKind.PERSISTENCE,
        ProviderKind.QUEUE,
        ProviderKind.LOCK,
    }
    classes: dict[ProviderKind, type[Provider]] = {
        ProviderKind.PERSISTENCE: SqlitePersistence,
        ProviderKind.QUEUE: SqliteQueue,
        ProviderKind.LOCK: SqliteLock,
    }
    for spec in specs:
        assert spec.name == "sqlite"
        assert spec.url_schemes == ("sqlite",)
        assert spec.options_class is SqliteOptions
        assert spec.summary
        provider = spec.factory("sqlite:///:memory:", SqliteOptions())
        assert type(provider) is classes[spec.kind]
        # The spec repeats the class's capabilities honestly.
        assert spec.capabilities == type(provider).capabilities
    queue_caps = classes[ProviderKind.QUEUE].capabilities
    assert cap.DEQUEUE_BLOCKS not in queue_caps  # it polls for other processes' items
    assert {cap.DURABLE, cap.DISTRIBUTED, cap.QUEUE_REDELIVERY} <= queue_caps
    assert cap.LEASE_RENEWAL in classes[ProviderKind.LOCK].capabilities


def test_factories_accept_no_url_and_no_options() -> None:
    for spec in sqlite_plugin.register_providers():
        provider = spec.factory(None, None)
        assert provider.target.path.endswith("wfe.db")  # type: ignore[attr-defined]


def test_importing_the_plugin_does_not_import_sqlalchemy() -> None:
    code = (
        "import sys, wfe_sqlite.plugin as p; p.register_providers();"
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_host_finds_the_plugin_by_name_and_scheme() -> None:
    registry_module = pytest.importorskip("wfe_host.registry")
    registry = registry_module.PluginRegistry.from_environ({})
    names = {(p.kind, p.name) for p in registry.providers()}
    assert (ProviderKind.PERSISTENCE, "sqlite") in names
    assert (ProviderKind.QUEUE, "sqlite") in names
    assert (ProviderKind.LOCK, "sqlite") in names
