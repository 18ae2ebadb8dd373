"""The records plugin hooks return: what a plugin offers, and how to build it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import attrs

from wfe_core.providers import Provider, StepExecutor
from wfe_core.providers.capabilities import Capability, parse_capabilities


class ProviderKind(StrEnum):
    """The concerns a host is configured with, one provider each."""

    PERSISTENCE = "persistence"
    LOCK = "lock"
    QUEUE = "queue"
    SEARCH = "search"
    LIFECYCLE = "lifecycle"


def _spec_capabilities(values: Iterable[Capability | str]) -> frozenset[Capability]:
    return parse_capabilities(values, where="ProviderSpec")


@attrs.frozen
class ProviderSpec:
    """One provider a plugin offers.

    ``factory`` is called as ``factory(url, options)`` with the configured URL (or ``None``)
    and an instance of ``options_class`` structured from the settings' ``options`` mapping
    (``None`` when ``options_class`` is ``None``). Keep heavy imports inside the factory so that
    listing providers stays fast. ``url_schemes`` lets a URL alone select the provider
    (``sqlite`` for ``sqlite:///wfe.db``). ``capabilities`` repeats the provider class's
    ``capabilities`` so they can be shown without building one (and without importing the
    class); names may be given as strings, and are converted to
    :class:`~wfe_core.providers.capabilities.Capability` (an unknown one raises
    :class:`~wfe_core.errors.ProviderContractError`). The host checks that they equal the
    class's when it creates the provider.
    """

    kind: ProviderKind
    name: str
    factory: Callable[[str | None, Any], Provider]
    summary: str = ""
    url_schemes: tuple[str, ...] = ()
    options_class: type | None = None
    capabilities: frozenset[Capability] = attrs.field(
        default=frozenset(), converter=_spec_capabilities
    )


@attrs.frozen
class StepExecutorSpec:
    """A step type usable as ``type: <name>`` in YAML workflows."""

    name: str
    factory: Callable[[], StepExecutor]
    summary: str = ""


#: Loads every workflow definition from a file: ``load(path, config)`` where ``config`` holds
#: the load-time values (``--set key=value``). Returns ``WorkflowDefinition`` objects.
DefinitionLoader = Callable[[Path, Mapping[str, str] | None], list[Any]]


@attrs.frozen
class DefinitionFormatSpec:
    """A file format workflow definitions can be loaded from, chosen by file suffix."""

    name: str
    suffixes: tuple[str, ...]
    load: DefinitionLoader
    summary: str = ""
