from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType


def _load_fakes() -> ModuleType:
    # Shared with tests/plugins; loaded by path since test directories are not packages.
    name = "wfe_host_tests_fakes"
    if name not in sys.modules:
        path = Path(__file__).parent.parent / "plugins" / "_fakes.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def fakes() -> ModuleType:
    return _load_fakes()


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings files are discovered in the current directory; start every test without one.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def register_plugin():
    """Register a plugin object for this test only (see tests/plugins/conftest.py)."""
    from wfe_host.plugins import PluginLoadOptions, make_plugin_manager
    from wfe_host.registry import PluginRegistry, reset_default_registry, set_default_registry

    manager = make_plugin_manager(options=PluginLoadOptions(autoload=False))

    def register(plugin: object, name: str) -> PluginRegistry:
        manager.register_plugin(plugin, name)
        registry = PluginRegistry(manager)
        set_default_registry(registry)
        return registry

    yield register
    reset_default_registry()
