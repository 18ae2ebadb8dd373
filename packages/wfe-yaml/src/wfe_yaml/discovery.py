"""Finding the installed step types (``type:`` names) for the loader."""

from __future__ import annotations

import importlib.metadata
import logging
from typing import TYPE_CHECKING

import pluggy

from wfe_core.plugins import PROJECT_NAME, StepExecutorSpec
from wfe_core.plugins import hookspecs as core_hookspecs

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger("wfe_yaml")


def installed_step_executors() -> Mapping[str, StepExecutorSpec]:
    """Every installed step type by name.

    With wfe-host installed this is its process registry (so the ``WFE_*PLUGIN*`` switches
    and plugins registered by code apply); without it, the ``wfe`` entry points are read
    directly.
    """
    try:
        from wfe_host.registry import default_registry
    except ImportError:
        return _from_entry_points()
    return {entry.name: entry.spec for entry in default_registry().step_executors()}


def _from_entry_points() -> dict[str, StepExecutorSpec]:
    from wfe_yaml import plugin

    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(core_hookspecs)
    manager.register(plugin, name="yaml")
    for entry_point in importlib.metadata.entry_points(group=PROJECT_NAME):
        if entry_point.name == "yaml" or manager.has_plugin(entry_point.name):
            continue
        try:
            manager.register(entry_point.load(), name=entry_point.name)
        except Exception:
            logger.warning("could not load plugin %s", entry_point.name, exc_info=True)
    found: dict[str, StepExecutorSpec] = {}
    for records in manager.hook.register_step_executors():
        for record in records or ():
            if isinstance(record, StepExecutorSpec):
                found.setdefault(record.name, record)
    return found
