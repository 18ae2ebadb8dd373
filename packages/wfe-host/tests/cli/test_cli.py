"""The wfe command line: versions, listings, plugin commands and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version

import click
import pytest
from click.testing import CliRunner, Result

from wfe_core import hookimpl
from wfe_core.errors import ProviderNotFoundError, WfeError
from wfe_core.plugins import DefinitionFormatSpec, StepExecutorSpec
from wfe_host.cli import CliState, cli_state, main

NO_AUTOLOAD = {"WFE_DISABLE_PLUGIN_AUTOLOAD": "1"}


def run(args: list[str], registry=None, env: dict[str, str] | None = None) -> Result:
    state = CliState(registry=registry)
    return CliRunner().invoke(main, args, obj=state, env={**NO_AUTOLOAD, **(env or {})})


class Commands:
    """A plugin adding commands: one that resolves settings, one that fails, one buggy."""

    @hookimpl
    def register_cli_commands(self) -> list[click.Command]:
        @click.command("which")
        def which() -> None:
            """Print the persistence provider the settings select."""
            resolved = cli_state().resolve()
            click.echo(f"{resolved.settings.persistence.provider} {resolved.persistence.url}")

        @click.command("fail")
        def fail() -> None:
            raise WfeError("the workflow 'x' does not exist")

        @click.command("bug")
        def bug() -> None:
            raise RuntimeError("oops")

        @click.command("all")
        def all_providers() -> None:
            """Print the provider of every concern."""
            settings = cli_state().resolve().settings
            for concern in ("persistence", "lock", "queue", "search", "lifecycle"):
                click.echo(f"{concern}={getattr(settings, concern).provider}")

        return [which, fail, bug, all_providers]


@pytest.fixture
def registry(fakes):
    return fakes.registry_of(fakes.SQLITE, ("cmds", Commands(), "wfe-cmds"))


def test_version_shows_host_and_core_versions() -> None:
    result = run(["--version"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"wfe-host {version('wfe-host')}",
        f"wfe-core {version('wfe-core')}",
    ]


def test_help_lists_commands_and_the_env_vars_of_options(registry) -> None:
    result = run(["--help"], registry)
    assert result.exit_code == 0
    for text in ("plugins", "providers", "which", "WFE_PERSISTENCE", "WFE_CONFIG", "WFE_DEBUG"):
        assert text in result.stdout


def test_providers_table(fakes) -> None:
    result = run(["providers"], fakes.registry_of(fakes.SQLITE))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "KIND",
        "NAME",
        "DISTRIBUTION",
        "URL",
        "SCHEMES",
        "CAPABILITIES",
        "SUMMARY",
    ]
    assert lines[2].split()[:4] == ["persistence", "sqlite", "wfe-sqlite", "sqlite://"]


def test_providers_json_with_kind_filter(fakes) -> None:
    result = run(["providers", "--json", "--kind", "lock"], fakes.registry_of(fakes.VALKEY))
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert [(r["kind"], r["name"], r["distribution"]) for r in records] == [
        ("lock", "memory", "wfe-core"),
        ("lock", "valkey", "wfe-valkey"),
    ]
    assert records[1]["url_schemes"] == ["valkey", "redis"]
    assert set(records[0]) == {
        "kind",
        "name",
        "plugin",
        "distribution",
        "version",
        "summary",
        "url_schemes",
        "capabilities",
        "options",
    }


def test_plugins_table_and_json(registry) -> None:
    table = run(["plugins"], registry)
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "HOOKS"]
    assert "register_cli_commands" in table.stdout
    records = json.loads(run(["plugins", "--json"], registry).stdout)
    assert [(r["name"], r["distribution"], r["builtin"]) for r in records] == [
        ("cmds", "wfe-cmds", False),
        ("memory", "wfe-core", True),
        ("sqlite", "wfe-sqlite", False),
    ]


def test_the_real_environment_is_used_without_an_injected_registry() -> None:
    result = CliRunner().invoke(main, ["providers", "--json"], env=NO_AUTOLOAD)
    assert result.exit_code == 0
    assert {r["name"] for r in json.loads(result.stdout)} == {"memory"}
    result = CliRunner().invoke(main, ["plugins", "--json"], env={"WFE_PLUGINS": "example"})
    assert [r["name"] for r in json.loads(result.stdout)] == ["example", "memory"]


def test_plugin_commands_run_with_the_global_settings_options(registry) -> None:
    result = run(["--persistence", "sqlite:///cli.db", "which"], registry)
    assert result.exit_code == 0, result.output
    assert result.stdout == "sqlite sqlite:///cli.db\n"
    from_env = run(["which"], registry, env={"WFE_PERSISTENCE": "sqlite:///env.db"})
    assert from_env.stdout == "sqlite sqlite:///env.db\n"
    # the command line wins over the environment
    both = run(["--persistence", "sqlite:///cli.db", "which"], registry, {"WFE_PERSISTENCE": "x"})
    assert both.stdout == "sqlite sqlite:///cli.db\n"


def test_config_option_names_the_settings_file(registry, tmp_path) -> None:
    config = tmp_path / "wfe.toml"
    config.write_text('persistence = "sqlite:///from-file.db"\n', encoding="utf-8")
    result = run(["--config", str(config), "which"], registry)
    assert result.stdout == "sqlite sqlite:///from-file.db\n"


def test_errors_are_one_line_and_exit_1(registry) -> None:
    result = run(["--persistence", "postgresql://db/wfe", "which"], registry)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: settings: no persistence provider for URL scheme 'postgresql' "
        "(postgresql://db/wfe); installed: memory (memory://), sqlite (sqlite://). "
        "Install it with: pip install wfe-postgres\n"
    )
    failed = run(["fail"], registry)
    assert (failed.exit_code, failed.stderr) == (1, "Error: the workflow 'x' does not exist\n")


def test_debug_shows_the_exception_instead(registry) -> None:
    result = run(["--debug", "--persistence", "postgres", "which"], registry)
    assert result.exit_code == 1
    assert isinstance(result.exception, ProviderNotFoundError)
    result = run(["which"], registry, env={"WFE_DEBUG": "1", "WFE_PERSISTENCE": "postgres"})
    assert isinstance(result.exception, ProviderNotFoundError)


def test_unexpected_errors_are_one_line_too(registry) -> None:
    result = run(["bug"], registry)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: unexpected RuntimeError: oops (run with --debug for the traceback)\n"
    )
    assert isinstance(run(["--debug", "bug"], registry).exception, RuntimeError)


def test_usage_errors_exit_2() -> None:
    result = run(["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.stderr


def test_a_plugin_command_cannot_replace_a_builtin(fakes) -> None:
    class Clash:
        @hookimpl
        def register_cli_commands(self) -> list[click.Command]:
            return [click.Command("providers")]

    registry = fakes.registry_of(("clash", Clash(), "wfe-clash"))
    result = run(["anything"], registry)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: plugin 'clash' (wfe-clash 1.0) adds command 'providers', which is a built-in "
        "wfe command\n"
    )
    # the built-ins and --help still work, with a warning about the plugin
    help_result = run(["--help"], registry)
    assert help_result.exit_code == 0
    assert "Warning: plugin commands are unavailable: plugin 'clash'" in help_result.stderr
    assert run(["providers"], registry).exit_code == 0


def test_two_plugins_adding_the_same_command_is_an_error(fakes) -> None:
    class Twin:
        @hookimpl
        def register_cli_commands(self) -> list[click.Command]:
            return [click.Command("deploy")]

    registry = fakes.registry_of(("a", Twin(), "wfe-a"), ("b", Twin(), None))
    result = run(["deploy"], registry)
    assert result.stderr == (
        "Error: command 'deploy' is added twice: by plugin 'a' (wfe-a 1.0) and by plugin 'b'\n"
    )


def test_a_broken_plugin_is_one_error_line() -> None:
    result = CliRunner().invoke(main, ["providers"], env={"WFE_PLUGINS": "nosuchplugin"})
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: WFE_PLUGINS names 'nosuchplugin', but no installed")
    assert len(result.stderr.splitlines()) == 1


def test_python_dash_m_runs_the_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "wfe_host", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("wfe-host ")
    usage = subprocess.run(
        [sys.executable, "-m", "wfe_host", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert usage.stdout.startswith("Usage: wfe ")


def test_trace_plugins_prints_hook_calls_to_stderr() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")} | {
        "WFE_TRACE_PLUGINS": "1",
        "WFE_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "wfe_host", "providers"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr
    assert "calling register_providers of plugin 'memory'" in completed.stderr
    assert "finish register_providers -->" in completed.stderr
    assert completed.stdout.startswith("KIND")


def test_providers_table_also_lists_step_types_and_formats(fakes) -> None:
    class Yaml:
        @hookimpl
        def register_step_executors(self) -> list[StepExecutorSpec]:
            return [StepExecutorSpec("shell", lambda: None, summary="Runs a shell script")]  # type: ignore[arg-type,return-value]

        @hookimpl
        def register_definition_formats(self) -> list[DefinitionFormatSpec]:
            return [DefinitionFormatSpec("yaml", (".yaml", ".yml"), lambda p, c: [], "YAML")]

    registry = fakes.registry_of(("yaml", Yaml(), "wfe-yaml"))
    lines = run(["providers"], registry).stdout.splitlines()
    assert lines[-5].split() == ["STEP", "TYPE", "DISTRIBUTION", "SUMMARY"]
    assert lines[-4].split() == ["shell", "wfe-yaml", "Runs", "a", "shell", "script"]
    assert lines[-2].split()[:4] == ["DEFINITION", "FORMAT", "DISTRIBUTION", "SUFFIXES"]
    assert lines[-1].split() == ["yaml", "wfe-yaml", ".yaml,", ".yml", "YAML"]
    # the JSON stays a list of providers
    records = json.loads(run(["providers", "--json"], registry).stdout)
    assert {r["kind"] for r in records} == {"persistence", "lock", "queue", "search", "lifecycle"}


def test_a_bad_switch_value_is_one_error_line() -> None:
    result = CliRunner().invoke(main, ["providers"], env={"WFE_TRACE_PLUGINS": "verbose"})
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: environment WFE_TRACE_PLUGINS: expected 1/0, true/false, yes/no or on/off, "
        "got 'verbose'\n"
    )


def test_every_concern_has_a_global_option(fakes) -> None:
    cmds = ("cmds", Commands(), None)
    registry = fakes.registry_of(fakes.SQLITE, fakes.VALKEY, fakes.OPENSEARCH, cmds)
    args = ["--persistence", "sqlite:///x.db", "--lock", "valkey", "--queue", "redis://c"]
    args += ["--search", "https://s:9200", "--lifecycle", "valkey", "all"]
    result = run(args, registry)
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [
        "persistence=sqlite",
        "lock=valkey",
        "queue=valkey",
        "search=opensearch",
        "lifecycle=valkey",
    ]


def test_a_misspelled_settings_variable_gets_one_did_you_mean_line(registry) -> None:
    result = run(["which"], registry, env={"WFE_PERSISTENCE_UR": "sqlite:///x.db"})
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: environment WFE_PERSISTENCE_UR: unknown setting; did you mean "
        "WFE_PERSISTENCE_URL?\n"
    )
