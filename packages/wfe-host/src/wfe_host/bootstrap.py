"""From settings to providers: :func:`resolve` is what ``WorkflowHost.from_settings`` calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.errors import ProviderNotFoundError
from wfe_core.plugins import ProviderKind
from wfe_core.providers import (
    LifecyclePublisher,
    LockProvider,
    PersistenceProvider,
    Provider,
    QueueProvider,
    SearchIndex,
)
from wfe_host.options import HostOptions
from wfe_host.registry import PluginRegistry, default_registry
from wfe_host.settings import (
    HostSettings,
    ProviderSettings,
    SettingsError,
    SettingsProblem,
    load_settings,
    source_of,
)

if TYPE_CHECKING:
    import os


#: The provider a concern gets when nothing selects one (search: none).
DEFAULT_PROVIDER = "memory"


@attrs.frozen
class ResolvedSettings:
    """Providers built from settings (not yet entered: the host enters and closes them)."""

    persistence: PersistenceProvider
    lock: LockProvider
    queue: QueueProvider
    #: ``None`` when no search provider is configured (searches go to persistence).
    search: SearchIndex | None
    lifecycle: LifecyclePublisher
    #: The host's own options.
    options: HostOptions
    #: The registry the providers were looked up in.
    registry: PluginRegistry
    #: The merged settings, with each concern's provider name filled in as selected.
    settings: HostSettings
    #: Dotted setting path → the source that set it (``settings``, ``environment WFE_X``, a
    #: file name); paths left at their defaults are absent.
    origins: Mapping[str, str] = attrs.field(factory=dict)


def resolve(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    registry: PluginRegistry | None = None,
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> ResolvedSettings:
    """Read settings from every source, select a provider per concern and build them.

    ``source`` is a mapping of explicit settings or the path of a TOML file; ``overrides``
    are explicit settings too (``persistence="sqlite:///wfe.db"``, ``host={"concurrency": 4}``).
    ``environ`` replaces ``os.environ`` for both the ``WFE_*`` settings and the plugin
    switches. ``registry`` defaults to :func:`~wfe_host.registry.default_registry` (or, when
    ``environ`` is given, a registry built from it). ``defaults`` sit below every source; the
    CLI uses them for its own defaults.

    Selection per concern: the ``provider`` name if set; else the ``url``'s scheme; else
    persistence is ``memory``; lock and queue follow the persistence provider (with its URL,
    and its options when they are of the same class) when it offers them and are ``memory``
    otherwise; lifecycle is ``memory``; search is not configured.

    Raises :class:`~wfe_core.errors.ConfigurationError` (a
    :class:`~wfe_host.settings.SettingsError` for invalid values, naming the field path and
    its source; a :class:`~wfe_core.errors.ProviderNotFoundError` for unknown names).
    """
    if registry is None:
        registry = default_registry() if environ is None else PluginRegistry.from_environ(environ)
    reg = registry

    def provider_of_url(concern: str, url: str) -> str | None:
        return reg.provider_name_for_url(concern, url)

    loaded = load_settings(
        source, environ=environ, defaults=defaults, provider_of_url=provider_of_url, **overrides
    )
    settings, origins = loaded.settings, loaded.origins

    persistence = _choose(
        reg,
        ProviderKind.PERSISTENCE,
        settings.persistence,
        origins,
        ProviderSettings(provider=DEFAULT_PROVIDER),
    )
    assert persistence is not None  # a default was given

    def follow_persistence(kind: ProviderKind) -> ProviderSettings:
        # The same backend for lock and queue when it offers them: one thing to run, and
        # shared by every host that uses it (memory ones would not coordinate hosts).
        name = persistence.provider
        if name is None or not reg.has_provider(kind, name):
            return ProviderSettings(provider=DEFAULT_PROVIDER)
        # Its options too when they are of the same class (one SQLite file: the same sync and
        # timeout settings, so one writer connection serves persistence, lock and queue).
        same_options = (
            reg.provider(kind, name).spec.options_class
            is reg.provider(ProviderKind.PERSISTENCE, name).spec.options_class
        )
        options = dict(persistence.options) if same_options else {}
        return ProviderSettings(provider=name, url=persistence.url, options=options)

    lock = _choose(
        reg, ProviderKind.LOCK, settings.lock, origins, follow_persistence(ProviderKind.LOCK)
    )
    queue = _choose(
        reg, ProviderKind.QUEUE, settings.queue, origins, follow_persistence(ProviderKind.QUEUE)
    )
    search = _choose(reg, ProviderKind.SEARCH, settings.search, origins, None)
    lifecycle = _choose(
        reg,
        ProviderKind.LIFECYCLE,
        settings.lifecycle,
        origins,
        ProviderSettings(provider=DEFAULT_PROVIDER),
    )
    assert lock is not None
    assert queue is not None
    assert lifecycle is not None

    chosen = attrs.evolve(
        settings,
        persistence=persistence,
        lock=lock,
        queue=queue,
        search=search if search is not None else ProviderSettings(),
        lifecycle=lifecycle,
    )

    def create(kind: ProviderKind, concern: ProviderSettings) -> Provider:
        try:
            return reg.create(kind, concern)
        except SettingsError as exc:
            raise exc.with_sources(origins) from exc

    built_persistence = create(ProviderKind.PERSISTENCE, persistence)
    built_lock = create(ProviderKind.LOCK, lock)
    built_queue = create(ProviderKind.QUEUE, queue)
    built_search = create(ProviderKind.SEARCH, search) if search is not None else None
    built_lifecycle = create(ProviderKind.LIFECYCLE, lifecycle)
    # registry.create checked each against its kind's class; these narrow the types for mypy.
    assert isinstance(built_persistence, PersistenceProvider)
    assert isinstance(built_lock, LockProvider)
    assert isinstance(built_queue, QueueProvider)
    assert built_search is None or isinstance(built_search, SearchIndex)
    assert isinstance(built_lifecycle, LifecyclePublisher)
    return ResolvedSettings(
        persistence=built_persistence,
        lock=built_lock,
        queue=built_queue,
        search=built_search,
        lifecycle=built_lifecycle,
        options=settings.host,
        registry=reg,
        settings=chosen,
        origins=origins,
    )


def _choose(
    registry: PluginRegistry,
    kind: ProviderKind,
    concern: ProviderSettings,
    origins: Mapping[str, str],
    default: ProviderSettings | None,
) -> ProviderSettings | None:
    """``concern`` with its provider name filled in, or the default when it selects none."""
    if concern.provider is None and concern.url is None:
        if default is None:
            if concern.options:
                raise SettingsError(
                    [
                        SettingsProblem(
                            f"{kind}.options",
                            f"options are set but no {kind} provider is selected; set "
                            f"{kind}.provider or {kind}.url",
                            source_of(f"{kind}.options", origins),
                        )
                    ]
                )
            return None
        # The concern's own options win over those it would inherit from the default.
        concern = attrs.evolve(default, options=concern.options or default.options)
    try:
        entry = registry.select(kind, concern)
    except SettingsError as exc:
        raise exc.with_sources(origins) from None
    except ProviderNotFoundError as exc:
        field = "provider" if concern.provider is not None else "url"
        label = source_of(f"{kind}.{field}", origins)
        if label is None:
            raise
        raise ProviderNotFoundError(f"{label}: {exc}") from exc
    return attrs.evolve(concern, provider=entry.name)
