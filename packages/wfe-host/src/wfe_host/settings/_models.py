"""The settings models: a provider per concern, and everything a host is configured with."""

from __future__ import annotations

from typing import Any

import attrs

from wfe_host.options import HostOptions

#: The concerns a host has one provider each for, in the order they are resolved.
CONCERNS: tuple[str, ...] = ("persistence", "lock", "queue", "search", "lifecycle")


@attrs.define
class ProviderSettings:
    """How one concern (persistence, lock, queue, search, lifecycle) is provided.

    ``provider`` selects an installed provider by name (``memory``, ``sqlite``, ...); when it
    is unset, the scheme of ``url`` selects it (``sqlite:///wfe.db``). ``options`` is structured
    into the provider's own options class.
    """

    #: The provider's name, as ``wfe providers`` lists it.
    provider: str | None = None
    #: Where the provider's backend is (a database URL, a server address, ...).
    url: str | None = None
    #: Provider-specific options; unknown keys are errors.
    options: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class HostSettings:
    """Everything a host is configured with: a provider per concern plus its own options."""

    persistence: ProviderSettings = attrs.Factory(ProviderSettings)
    lock: ProviderSettings = attrs.Factory(ProviderSettings)
    queue: ProviderSettings = attrs.Factory(ProviderSettings)
    #: Unset (no provider, no URL) means: no search index; searches go to persistence.
    search: ProviderSettings = attrs.Factory(ProviderSettings)
    lifecycle: ProviderSettings = attrs.Factory(ProviderSettings)
    host: HostOptions = attrs.Factory(HostOptions)

    def concern(self, name: str) -> ProviderSettings:
        """The settings of concern ``name`` (one of :data:`CONCERNS`)."""
        if name not in CONCERNS:
            raise KeyError(name)
        value: ProviderSettings = getattr(self, name)
        return value
