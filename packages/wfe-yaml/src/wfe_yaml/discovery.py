"""Finding the installed step types (``type:`` names) for the loader.

The loader asks the same plugin manager the host uses
(:func:`wfe_core.spi.make_plugin_manager`, honouring the same ``WFE_*PLUGIN*``
switches), so every installed ``wfe`` plugin's step types are known. wfe-yaml's own step
types are there even when plugin autoloading is disabled. Code that builds its own set of step
types passes ``executors=`` to :func:`wfe_yaml.load_workflow` instead.
"""

from __future__ import annotations

from wfe_core.plugins import StepExecutorSpec
from wfe_core.spi import make_plugin_manager

#: The name wfe-yaml's entry point registers its plugin under.
PLUGIN_NAME = "yaml"


def installed_step_executors() -> dict[str, StepExecutorSpec]:
    """Every installed step type by name (the first plugin to offer a name wins)."""
    from wfe_yaml import plugin

    manager = make_plugin_manager()
    if not manager.has_plugin(PLUGIN_NAME) and not manager.is_blocked(PLUGIN_NAME):
        manager.register_plugin(plugin, PLUGIN_NAME, distribution="wfe-yaml")
    found: dict[str, StepExecutorSpec] = {}
    for records in manager.hook.register_step_executors():
        for record in records or ():
            if isinstance(record, StepExecutorSpec):
                found.setdefault(record.name, record)
    return found
