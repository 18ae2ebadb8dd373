"""The host's plugin manager: wfe-core's (:func:`wfe_core.spi.make_plugin_manager`), which
also knows the host's own hooks (:mod:`wfe_host.hookspecs`: commands for the ``wfe`` CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core import spi as _core
from wfe_core.spi import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    ENV_BLOCK_PLUGINS,
    ENV_DISABLE_AUTOLOAD,
    ENV_PLUGINS,
    ENV_TRACE_PLUGINS,
    PluginInfo,
    PluginLoadOptions,
    env_flag,
)
from wfe_host import hookspecs as host_hookspecs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ENV_BLOCK_PLUGINS",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
    "ENV_TRACE_PLUGINS",
    "PluginInfo",
    "PluginLoadOptions",
    "PluginManager",
    "env_flag",
    "make_plugin_manager",
]


class PluginManager(_core.PluginManager):
    """A ``wfe`` plugin manager that knows the host's hooks too. A fresh one holds no
    plugins, which is what tests that register their own plugin objects want."""

    def __init__(self) -> None:
        super().__init__(hookspecs=(host_hookspecs,))


def make_plugin_manager(
    environ: Mapping[str, str] | None = None, *, options: PluginLoadOptions | None = None
) -> _core.PluginManager:
    """:func:`wfe_core.spi.make_plugin_manager` with the host's hooks added."""
    return _core.make_plugin_manager(environ, options=options, hookspecs=(host_hookspecs,))
