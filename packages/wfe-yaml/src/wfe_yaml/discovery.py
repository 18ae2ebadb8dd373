"""Finding the installed step types (``type:`` names) for the loader.

wfe-yaml depends on wfe-core only, so it reads the ``wfe`` entry points itself (with the
same switches the host honours: ``WFE_DISABLE_PLUGIN_AUTOLOAD``, ``WFE_PLUGINS``,
``WFE_BLOCK_PLUGINS``). Code that builds its own set of step types passes
``executors=`` to :func:`wfe_yaml.load_workflow` instead.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os

import pluggy

from wfe_core.plugins import PROJECT_NAME, StepExecutorSpec
from wfe_core.plugins import hookspecs as core_hookspecs

logger = logging.getLogger("wfe_yaml")

_TRUE = {"1", "true", "yes", "on"}


def _names(variable: str) -> set[str]:
    return {part.strip() for part in os.environ.get(variable, "").split(",") if part.strip()}


def installed_step_executors() -> dict[str, StepExecutorSpec]:
    """Every installed step type by name (wfe-yaml's own are always there)."""
    from wfe_yaml import plugin

    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(core_hookspecs)
    manager.register(plugin, name="yaml")
    autoload = os.environ.get("WFE_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower() not in _TRUE
    allowed = _names("WFE_PLUGINS")
    blocked = _names("WFE_BLOCK_PLUGINS")
    for entry_point in importlib.metadata.entry_points(group=PROJECT_NAME):
        name = entry_point.name
        if name == "yaml" or name in blocked or manager.has_plugin(name):
            continue
        if (allowed and name not in allowed) or (not allowed and not autoload):
            continue
        try:
            manager.register(entry_point.load(), name=name)
        except Exception:
            logger.warning("could not load plugin %s", name, exc_info=True)
    found: dict[str, StepExecutorSpec] = {}
    for records in manager.hook.register_step_executors():
        for record in records or ():
            if isinstance(record, StepExecutorSpec):
                found.setdefault(record.name, record)
    return found
