"""Fixtures every wfe-host test folder shares: fake plugins, and a plugin registered for one
test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wfe_host.plugins import PluginLoadOptions, make_plugin_manager
from wfe_host.registry import PluginRegistry, reset_default_registry, set_default_registry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

    from wfe_core.spi import PluginManager


def _load_helpers(name: str, path: Path) -> ModuleType:
    # Loaded by path: test directories are not packages (--import-mode=importlib). Once in
    # sys.modules, test modules import them by name (conftest files are imported first).
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_HERE = Path(__file__).parent
_fakes = _load_helpers("wfe_host_tests_fakes", _HERE / "plugins" / "_fakes.py")
_load_helpers("wfe_host_tests_cli_store", _HERE / "cli" / "_store.py")
_load_helpers("wfe_host_tests_polling", _HERE / "host" / "_polling.py")


@pytest.fixture
def fakes() -> ModuleType:
    """The fake plugins and provider specs of ``plugins/_fakes.py``."""
    return _fakes


@pytest.fixture
def plugin_manager() -> PluginManager:
    """A manager with only the built-in plugin (no entry points), for one test."""
    return make_plugin_manager(options=PluginLoadOptions(autoload=False))


@pytest.fixture
def register_plugin(
    plugin_manager: PluginManager,
) -> Iterator[Callable[[object, str], PluginRegistry]]:
    """Register a plugin object for this test only; returns the registry that sees it and
    makes that registry the process default (so resolve() and wfe use it) until the test ends.
    """

    def register(plugin: object, name: str) -> PluginRegistry:
        plugin_manager.register_plugin(plugin, name)
        registry = PluginRegistry(plugin_manager)
        set_default_registry(registry)
        return registry

    yield register
    reset_default_registry()
