"""The hooks a ``wfe`` plugin can implement.

A plugin is a module named by an entry point in the ``wfe`` group::

    [project.entry-points.wfe]
    my_plugin = "my_package.plugin"

and holds functions marked with :data:`wfe_core.hookimpl`, named after the hooks below. Hooks
are synchronous and only describe what the plugin offers; every hook returns a list of records
(an empty list when it offers nothing of that kind). Runtime work happens in the objects the
records' factories build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.plugins._markers import hookspec

if TYPE_CHECKING:
    from wfe_core.plugins._specs import DefinitionFormatSpec, ProviderSpec, StepExecutorSpec


@hookspec
def register_providers() -> list[ProviderSpec]:  # type: ignore[empty-body]
    """Providers of persistence, lock, queue, search or lifecycle events.

    Each :class:`~wfe_core.plugins.ProviderSpec` names its kind, its name (what settings
    select it by), the URL schemes that imply it, its options class and its capabilities
    (:class:`~wfe_core.providers.Capability` members or their names as strings; they must
    equal the provider class's, which the host checks when it creates the provider). Two
    plugins offering the same kind and name is an error reported when the host starts.
    """


@hookspec
def register_step_executors() -> list[StepExecutorSpec]:  # type: ignore[empty-body]
    """Step types for YAML workflows, selected by ``type: <name>`` on a step."""


@hookspec
def register_definition_formats() -> list[DefinitionFormatSpec]:  # type: ignore[empty-body]
    """File formats workflow definitions load from, chosen by file suffix
    (used by ``host.load_definitions(path)`` and ``wfe run FILE``)."""
