"""Plugin hooks and the records plugins register (see :mod:`wfe_core.plugins.hookspecs`).

Import them from this package: its submodules are internal (the plugin manager is re-exported
by :mod:`wfe_core.spi`)."""

from __future__ import annotations

from wfe_core.plugins import hookspecs
from wfe_core.plugins._markers import PROJECT_NAME, hookimpl, hookspec
from wfe_core.plugins._specs import (
    DefinitionFormatSpec,
    DefinitionLoader,
    ProviderKind,
    ProviderSpec,
    StepExecutorSpec,
)

__all__ = [
    "PROJECT_NAME",
    "DefinitionFormatSpec",
    "DefinitionLoader",
    "ProviderKind",
    "ProviderSpec",
    "StepExecutorSpec",
    "hookimpl",
    "hookspec",
    "hookspecs",
]
