"""Plugin discovery: built-in plugin, entry points, the WFE_* switches, and broken plugins."""

from __future__ import annotations

import logging
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from wfe_core import hookimpl
from wfe_core.errors import ConfigurationError, PluginError
from wfe_host.plugins import PluginLoadOptions, PluginManager, make_plugin_manager
from wfe_host.registry import PluginRegistry

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# In this workspace the example plugin is installed (it is a workspace member), as an
# ordinary distribution with a `wfe` entry point named "example".
NO_AUTOLOAD = {"WFE_DISABLE_PLUGIN_AUTOLOAD": "1"}


def names(pm: PluginManager) -> list[str]:
    return [info.name for info in pm.plugin_infos()]


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Install a distribution (metadata + modules) on sys.path for this test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def install(
        name: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0"
    ) -> None:
        info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[wfe]\n{lines}", encoding="utf-8")
        for module, source in modules.items():
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            created.append(module)

    yield install
    for module in created:
        sys.modules.pop(module, None)


def test_the_builtin_memory_plugin_is_always_registered() -> None:
    pm = make_plugin_manager(NO_AUTOLOAD)
    assert names(pm) == ["memory"]
    info = pm.plugin_info("memory")
    assert (info.distribution, info.builtin, info.module) == (
        "wfe-core",
        True,
        "wfe_core.memory._plugin",
    )
    assert info.version  # the installed wfe-core's version
    assert info.hooks == ("register_providers",)


def test_installed_entry_points_are_loaded_with_their_distribution() -> None:
    pm = make_plugin_manager({"WFE_PLUGINS": "example"})
    info = pm.plugin_info("example")
    assert (info.distribution, info.version) == ("wfe-example-plugin", "0.1.0")
    assert info.module == "wfe_example_plugin.plugin"
    assert info.hooks == ("register_providers",)
    assert not info.builtin


def test_autoload_loads_every_installed_plugin() -> None:
    assert "example" in names(make_plugin_manager({}))


def test_disabling_autoload_loads_no_entry_points() -> None:
    assert "example" not in names(make_plugin_manager(NO_AUTOLOAD))


def test_allow_list_loads_named_plugins_even_with_autoload_disabled() -> None:
    pm = make_plugin_manager({**NO_AUTOLOAD, "WFE_PLUGINS": " example , "})
    assert names(pm) == ["example", "memory"]


def test_allow_list_loads_only_the_named_plugins(fake_distribution: Callable[..., None]) -> None:
    fake_distribution("wfe-other", {"other": "other_wfe_plugin"}, {"other_wfe_plugin": ""})
    assert "other" in names(make_plugin_manager({}))
    assert names(make_plugin_manager({"WFE_PLUGINS": "example"})) == ["example", "memory"]


def test_allow_list_naming_a_plugin_that_is_not_installed_fails() -> None:
    with pytest.raises(PluginError) as info:
        make_plugin_manager({"WFE_PLUGINS": "example,sqlitee"})
    assert str(info.value).startswith(
        "WFE_PLUGINS names 'sqlitee', but no installed distribution has a 'wfe' entry point "
        "of that name; installed: "
    )
    assert "example" in str(info.value)


def test_block_list_wins_over_autoload_and_allow_list() -> None:
    assert "example" not in names(make_plugin_manager({"WFE_BLOCK_PLUGINS": "example"}))
    blocked = {"WFE_PLUGINS": "example", "WFE_BLOCK_PLUGINS": "example"}
    assert names(make_plugin_manager(blocked)) == ["memory"]


def test_block_list_can_remove_the_builtin_plugin() -> None:
    pm = make_plugin_manager({**NO_AUTOLOAD, "WFE_BLOCK_PLUGINS": "memory"})
    assert names(pm) == []
    assert PluginRegistry(pm).providers() == []


def test_a_switch_with_a_value_that_is_not_a_boolean_is_an_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        make_plugin_manager({"WFE_DISABLE_PLUGIN_AUTOLOAD": "please"})
    assert str(info.value) == (
        "environment WFE_DISABLE_PLUGIN_AUTOLOAD: expected 1/0, true/false, yes/no or on/off, "
        "got 'please'"
    )


def test_false_values_keep_autoload_on() -> None:
    for value in ("0", "false", "no", "off", ""):
        assert "example" in names(make_plugin_manager({"WFE_DISABLE_PLUGIN_AUTOLOAD": value}))


def test_a_plugin_that_fails_to_import_names_itself_and_its_distribution(
    fake_distribution: Callable[..., None],
) -> None:
    fake_distribution(
        "wfe-broken",
        {"broken": "broken_wfe_plugin"},
        {"broken_wfe_plugin": "import no_such_driver\n"},
    )
    with pytest.raises(PluginError) as info:
        make_plugin_manager({"WFE_PLUGINS": "broken"})
    assert str(info.value) == (
        "plugin 'broken' (wfe-broken 1.0) failed to import 'broken_wfe_plugin': "
        "ModuleNotFoundError: No module named 'no_such_driver'"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_two_distributions_with_the_same_plugin_name_are_an_error(
    fake_distribution: Callable[..., None],
) -> None:
    fake_distribution("wfe-copycat", {"example": "copycat_wfe_plugin"}, {"copycat_wfe_plugin": ""})
    with pytest.raises(
        PluginError, match="plugin name 'example' is taken twice: by plugin 'example' "
    ):
        make_plugin_manager({"WFE_PLUGINS": "example"})


def test_an_entry_point_cannot_take_the_builtin_name(
    fake_distribution: Callable[..., None],
) -> None:
    fake_distribution(
        "wfe-fake-memory", {"memory": "fake_memory_plugin"}, {"fake_memory_plugin": ""}
    )
    with pytest.raises(PluginError) as info:
        make_plugin_manager({})
    assert str(info.value) == (
        "plugin name 'memory' is taken twice: by plugin 'memory' (wfe-core "
        f"{make_plugin_manager(NO_AUTOLOAD).plugin_info('memory').version}) and by plugin "
        "'memory' (wfe-fake-memory 1.0); uninstall one of them"
    )


def test_a_misspelled_hook_is_reported_with_the_known_hooks(plugin_manager: PluginManager) -> None:
    class Typo:
        @hookimpl
        def register_provider(self) -> list[object]:
            return []

    with pytest.raises(PluginError) as info:
        plugin_manager.register_plugin(Typo(), "typo", distribution="wfe-typo", version="2.0")
    message = str(info.value)
    assert message.startswith(
        "plugin 'typo' (wfe-typo 2.0) implements unknown hook(s) register_provider; known hooks: "
    )
    assert "register_providers" in message
    assert "register_cli_commands" in message
    assert not plugin_manager.has_plugin("typo")


def test_an_optional_hook_of_a_newer_version_is_allowed(plugin_manager: PluginManager) -> None:
    class Newer:
        @hookimpl(optionalhook=True)
        def register_time_machines(self) -> list[object]:
            return []

    assert plugin_manager.register_plugin(Newer(), "newer")


def test_a_hookimpl_with_a_wrong_signature_is_reported(plugin_manager: PluginManager) -> None:
    class WrongArgs:
        @hookimpl
        def register_providers(self, host: object) -> list[object]:
            return []

    with pytest.raises(PluginError) as info:
        plugin_manager.register_plugin(WrongArgs(), "wrong")
    message = str(info.value)
    assert message.startswith(
        "plugin 'wrong' is invalid: Plugin 'wrong' for hook 'register_providers'; "
    )
    assert "Argument(s) {'host'} are declared in the hookimpl" in message
    assert "\n" not in message


def test_plugin_info_of_a_plugin_registered_by_code(plugin_manager: PluginManager, fakes) -> None:
    plugin_manager.register_plugin(fakes.FakeBackend("sqlite"), "sqlite")
    info = plugin_manager.plugin_info("sqlite")
    assert (info.distribution, info.version, info.builtin) == (None, None, False)
    assert info.module == "FakeBackend"
    assert info.describe() == "plugin 'sqlite'"


def test_tracing_logs_hook_calls_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wfe_core.plugins.manager")
    PluginRegistry(make_plugin_manager({**NO_AUTOLOAD, "WFE_TRACE_PLUGINS": "1"}))
    traced = [r.getMessage() for r in caplog.records if r.name == "wfe_core.plugins.manager"]
    assert any("register_providers" in m for m in traced)
    assert any("finish register_providers" in m for m in traced)


def test_no_tracing_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wfe_core.plugins.manager")
    PluginRegistry(make_plugin_manager(NO_AUTOLOAD))
    assert not any("finish register_providers" in r.getMessage() for r in caplog.records)


def test_options_can_be_given_instead_of_the_environment() -> None:
    pm = make_plugin_manager(options=PluginLoadOptions(autoload=False, allow=("example",)))
    assert names(pm) == ["example", "memory"]
