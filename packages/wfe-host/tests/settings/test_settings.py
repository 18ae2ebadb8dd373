"""Reading and merging settings: sources, precedence, shorthands, env names, errors."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from wfe_core.errors import ConfigurationError
from wfe_core.spi import OptionChecks
from wfe_host.options import HostOptions
from wfe_host.settings import (
    HostSettings,
    ProviderSettings,
    SettingsError,
    load_settings,
    structure,
)


def write(path: str, text: str) -> Path:
    file = Path(path)
    file.write_text(text, encoding="utf-8")
    return file


def test_nothing_set_gives_defaults() -> None:
    loaded = load_settings(environ={})
    assert loaded.settings == HostSettings()
    assert loaded.origins == {}


def test_a_concern_given_as_a_string_is_a_url_or_a_provider_name() -> None:
    settings = load_settings(
        {"persistence": "sqlite:///wfe.db", "lock": "memory", "queue": "memory://"}, environ={}
    ).settings
    assert settings.persistence == ProviderSettings(url="sqlite:///wfe.db")
    assert settings.lock == ProviderSettings(provider="memory")
    assert settings.queue == ProviderSettings(url="memory://")


def test_explicit_values_accept_settings_objects() -> None:
    settings = load_settings(
        {"persistence": ProviderSettings("sqlite", None, {"pool_size": 3})},
        host=HostOptions(concurrency=4),
        environ={},
    ).settings
    assert settings.persistence == ProviderSettings("sqlite", None, {"pool_size": 3})
    assert settings.host.concurrency == 4


def test_wfe_toml_in_the_current_directory_is_read() -> None:
    write(
        "wfe.toml",
        """
        persistence = "sqlite:///wfe.db"
        [queue]
        provider = "memory"
        [lock]
        url = "valkey://cache"
        options = { prefix = "wfe" }
        [host]
        concurrency = 8
        run_workers = false
        """.replace("\n        ", "\n"),
    )
    loaded = load_settings(environ={})
    assert loaded.settings.persistence.url == "sqlite:///wfe.db"
    assert loaded.settings.queue.provider == "memory"
    assert loaded.settings.lock == ProviderSettings(None, "valkey://cache", {"prefix": "wfe"})
    assert (loaded.settings.host.concurrency, loaded.settings.host.run_workers) == (8, False)
    assert loaded.source_of("lock.options.prefix") == "wfe.toml"


def test_pyproject_tool_wfe_is_read_when_there_is_no_wfe_toml() -> None:
    write("pyproject.toml", '[project]\nname = "x"\n[tool.wfe]\npersistence = "memory"\n')
    loaded = load_settings(environ={})
    assert loaded.settings.persistence.provider == "memory"
    assert loaded.source_of("persistence") == "pyproject.toml [tool.wfe]"
    write("wfe.toml", 'persistence = "sqlite:///wfe.db"\n')
    assert load_settings(environ={}).settings.persistence.url == "sqlite:///wfe.db"


def test_a_pyproject_without_tool_wfe_is_ignored() -> None:
    write("pyproject.toml", '[project]\nname = "x"\n')
    assert load_settings(environ={}).settings == HostSettings()


def test_an_explicit_path_or_wfe_config_names_the_file(tmp_path: Path) -> None:
    write("wfe.toml", 'persistence = "from-cwd"\n')
    other = write(str(tmp_path / "other.toml"), 'persistence = "from-other"\n')
    assert load_settings(other, environ={}).settings.persistence.provider == "from-other"
    from_env = load_settings(environ={"WFE_CONFIG": str(other)})
    assert from_env.settings.persistence.provider == "from-other"


def test_a_missing_or_invalid_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=r"^settings file nope\.toml does not exist$"):
        load_settings("nope.toml", environ={})
    write("wfe.toml", "persistence = \n")
    with pytest.raises(ConfigurationError, match=r"^wfe\.toml: invalid TOML: "):
        load_settings(environ={})


def test_environment_variables() -> None:
    settings = load_settings(
        environ={
            "WFE_PERSISTENCE": "sqlite:///env.db",
            "WFE_LOCK_PROVIDER": "memory",
            "WFE_QUEUE_URL": "valkey://cache",
            "WFE_QUEUE_OPTIONS": '{"prefix": "wfe"}',
            "WFE_SEARCH": "opensearch",
            "WFE_LIFECYCLE_URL": "jsonl:///tmp/events.jsonl",
            "WFE_HOST_CONCURRENCY": "4",
            "WFE_HOST_LEASE_SECONDS": "2.5",
            "WFE_HOST_RUN_WORKERS": "false",
            "WFE_HOST_WORKER_ID": "worker-1",
            "UNRELATED": "x",
            "WFE_TEST_POSTGRES_URL": "postgresql://ignored",
        }
    ).settings
    assert settings.persistence == ProviderSettings(url="sqlite:///env.db")
    assert settings.lock == ProviderSettings(provider="memory")
    assert settings.queue == ProviderSettings(None, "valkey://cache", {"prefix": "wfe"})
    assert settings.search == ProviderSettings(provider="opensearch")
    assert settings.lifecycle.url == "jsonl:///tmp/events.jsonl"
    assert settings.host == HostOptions(
        concurrency=4, lease_seconds=2.5, run_workers=False, worker_id="worker-1"
    )


def test_specific_variables_win_over_the_shorthand() -> None:
    settings = load_settings(
        environ={"WFE_PERSISTENCE": "sqlite:///a.db", "WFE_PERSISTENCE_URL": "sqlite:///b.db"}
    ).settings
    assert settings.persistence.url == "sqlite:///b.db"


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    secret = write(str(tmp_path / "db-url"), "postgresql://wfe:s3cret@db/wfe\n")
    settings = load_settings(environ={"WFE_PERSISTENCE_URL_FILE": str(secret)}).settings
    assert settings.persistence.url == "postgresql://wfe:s3cret@db/wfe"  # newline stripped


def test_a_secret_file_that_cannot_be_read_is_a_clear_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_PERSISTENCE_URL_FILE": "/no/such/file"})
    assert str(info.value) == (
        "environment WFE_PERSISTENCE_URL_FILE: cannot read /no/such/file: No such file or directory"
    )


def test_a_value_and_its_file_together_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_HOST_WORKER_ID": "a", "WFE_HOST_WORKER_ID_FILE": "b"})
    assert str(info.value) == (
        "environment WFE_HOST_WORKER_ID: set either WFE_HOST_WORKER_ID or "
        "WFE_HOST_WORKER_ID_FILE, not both"
    )


def test_empty_variables_count_as_unset() -> None:
    assert load_settings(environ={"WFE_PERSISTENCE": "", "WFE_HOST_CONCURRENCY": ""}).settings == (
        HostSettings()
    )


def test_a_misspelled_variable_is_an_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_HOST_CONCURENCY": "4"})
    assert str(info.value) == (
        "environment WFE_HOST_CONCURENCY: unknown setting; did you mean WFE_HOST_CONCURRENCY?"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_QUEUE_URL_FILES": "/run/secret"})
    assert str(info.value) == (
        "environment WFE_QUEUE_URL_FILES: unknown setting; did you mean WFE_QUEUE_URL?"
    )


def test_a_variable_like_no_known_one_lists_only_its_group() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_LOCK_ZZZZZZZZ": "x"})
    assert str(info.value) == (
        "environment WFE_LOCK_ZZZZZZZZ: unknown setting; known WFE_LOCK_* variables: "
        "WFE_LOCK, WFE_LOCK_OPTIONS, WFE_LOCK_PROVIDER, WFE_LOCK_URL"
    )


def test_options_variable_must_be_a_json_object() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_QUEUE_OPTIONS": "[1, 2]"})
    assert str(info.value) == (
        "environment WFE_QUEUE_OPTIONS: queue.options: expected a JSON object, got list"
    )
    with pytest.raises(SettingsError, match=r"^environment WFE_QUEUE_OPTIONS: queue.options: "):
        load_settings(environ={"WFE_QUEUE_OPTIONS": "{prefix: 1}"})


def test_precedence_explicit_over_environment_over_file_over_defaults() -> None:
    write(
        "wfe.toml",
        "[host]\nconcurrency = 2\nmax_parallel_steps = 3\nlease_seconds = 4.0\n"
        'worker_id = "file"\n',
    )
    loaded = load_settings(
        {"host": {"concurrency": 20}},
        environ={"WFE_HOST_CONCURRENCY": "10", "WFE_HOST_MAX_PARALLEL_STEPS": "30"},
        defaults={"host": {"worker_id": "default", "run_workers": False}},
    )
    host = loaded.settings.host
    assert (host.concurrency, host.max_parallel_steps, host.lease_seconds) == (20, 30, 4.0)
    assert (host.worker_id, host.run_workers) == ("file", False)
    assert loaded.source_of("host.concurrency") == "settings"
    assert loaded.source_of("host.max_parallel_steps") == "environment WFE_HOST_MAX_PARALLEL_STEPS"
    assert loaded.source_of("host.lease_seconds") == "wfe.toml"
    assert loaded.source_of("host.run_workers") == "defaults"


def test_keyword_overrides_are_highest() -> None:
    loaded = load_settings(
        {"persistence": "sqlite:///mapping.db"},
        environ={},
        persistence="sqlite:///kwarg.db",
    )
    assert loaded.settings.persistence.url == "sqlite:///kwarg.db"


def test_none_means_not_set() -> None:
    loaded = load_settings(
        {"persistence": None, "host": {"concurrency": None}},
        environ={"WFE_PERSISTENCE": "memory", "WFE_HOST_CONCURRENCY": "3"},
        lock=None,
    )
    assert loaded.settings.persistence.provider == "memory"
    assert loaded.settings.host.concurrency == 3


def test_merge_is_per_field_an_env_url_keeps_the_files_options() -> None:
    write(
        "wfe.toml",
        '[persistence]\nurl = "sqlite:///file.db"\noptions = { pool_size = 3, echo = true }\n',
    )
    loaded = load_settings(
        {"persistence": {"options": {"echo": False}}},
        environ={"WFE_PERSISTENCE_URL": "sqlite:///env.db"},
    )
    assert loaded.settings.persistence == ProviderSettings(
        None, "sqlite:///env.db", {"pool_size": 3, "echo": False}
    )
    assert loaded.source_of("persistence.url") == "environment WFE_PERSISTENCE_URL"
    assert loaded.source_of("persistence.options.pool_size") == "wfe.toml"
    assert loaded.source_of("persistence.options.echo") == "settings"


def test_selecting_another_provider_drops_the_lower_sources_values_for_it() -> None:
    write(
        "wfe.toml",
        '[persistence]\nurl = "postgresql://db/wfe"\noptions = { pool_size = 30 }\n',
    )
    loaded = load_settings(environ={"WFE_PERSISTENCE": "memory"})
    # postgres options would mean nothing to memory, and the URL is not memory's
    assert loaded.settings.persistence == ProviderSettings(provider="memory")
    assert "persistence.options.pool_size" not in loaded.origins

    same = load_settings(
        environ={"WFE_PERSISTENCE": "postgresql://other/wfe"},
        provider_of_url=lambda concern, url: "postgres" if url.startswith("postgres") else None,
    )
    assert same.settings.persistence.options == {"pool_size": 30}


def test_unknown_keys_are_errors_naming_the_path_and_source() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"persistence": {"url": "sqlite:///x.db", "optionz": {}}}, environ={})
    assert str(info.value) == "settings: persistence.optionz: unknown key"
    write("wfe.toml", 'persistance = "memory"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(environ={})
    assert str(info.value) == "wfe.toml: persistance: unknown key"


def test_invalid_host_options_name_the_field_and_the_source() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"host": {"concurrency": 0}}, environ={})
    assert str(info.value) == "settings: host.concurrency: must be >= 1, got 0"
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"WFE_HOST_LEASE_SECONDS": "soon"})
    assert str(info.value) == (
        "environment WFE_HOST_LEASE_SECONDS: host.lease_seconds: expected a number, got 'soon'"
    )
    write("wfe.toml", "[host]\nrun_workers = 'maybe'\nconcurrency = 1.5\n")
    with pytest.raises(SettingsError) as info:
        load_settings(environ={})
    assert {p.format() for p in info.value.problems} == {
        "wfe.toml: host.run_workers: expected true or false, got 'maybe'",
        "wfe.toml: host.concurrency: expected an integer, got 1.5",
    }


def test_values_of_the_wrong_type_are_errors_not_converted() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"persistence": {"url": 5}}, environ={})
    assert str(info.value) == "settings: persistence.url: expected a string, got int 5"
    with pytest.raises(SettingsError) as info:
        load_settings({"persistence": 5}, environ={})
    assert str(info.value) == (
        "settings: persistence: expected a URL or provider name, or a table, got int"
    )
    with pytest.raises(SettingsError) as info:
        load_settings({"queue": {"options": ["a"]}}, environ={})
    assert str(info.value) == "settings: queue.options: expected a table (mapping)"


def test_settings_of_the_wrong_type_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="settings must be a mapping or a file path"):
        load_settings(42, environ={})  # type: ignore[arg-type]


def test_the_shorthand_variable_can_come_from_a_file(tmp_path: Path) -> None:
    secret = write(str(tmp_path / "persistence"), "postgresql://wfe:pw@db/wfe\n")
    loaded = load_settings(environ={"WFE_PERSISTENCE_FILE": str(secret)})
    assert loaded.settings.persistence.url == "postgresql://wfe:pw@db/wfe"
    assert loaded.source_of("persistence.url") == "environment WFE_PERSISTENCE_FILE"


def test_option_errors_name_the_option_at_its_field_path() -> None:
    checks = OptionChecks("demo")

    @attrs.frozen
    class DemoOptions:
        timeout: float = attrs.field(default=1.0, validator=checks.seconds())
        retries: int = attrs.field(default=1, validator=attrs.validators.ge(0))
        hosts: list[int] = attrs.Factory(list)

    with pytest.raises(SettingsError) as info:
        structure({"timeout": -1, "hosts": [1, "x"]}, DemoOptions, ("lock", "options"))
    assert {p.format() for p in info.value.problems} == {
        "lock.options.hosts[1]: expected an integer, got 'x'",
    }
    with pytest.raises(SettingsError) as info:
        structure({"timeout": -1}, DemoOptions, ("lock", "options"))
    assert str(info.value) == (
        "lock.options.timeout: must be a finite number of seconds > 0 and at most 86400, got -1.0"
    )
    with pytest.raises(SettingsError) as info:
        structure({"retries": -2, "colour": 1, "shade": 2}, DemoOptions, ("lock", "options"))
    assert [p.format() for p in info.value.problems] == [
        "lock.options.colour: unknown key",
        "lock.options.shade: unknown key",
    ]
    with pytest.raises(SettingsError) as info:
        structure({"retries": -2}, DemoOptions)
    assert str(info.value) == "retries: must be >= 0, got -2"
