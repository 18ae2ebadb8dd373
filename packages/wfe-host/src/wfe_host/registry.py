"""The provider registry: everything the loaded plugins offer, looked up by name.

:class:`PluginRegistry` asks every plugin's hooks once, remembers which plugin (and which
distribution) offered each record, and answers lookups by kind and name, by URL scheme, by
step type and by file suffix. Unknown names fail with the installed names and a hint that
helps: "did you mean" for a typo, the distribution to ``pip install`` for a provider WFE
publishes, or, when that distribution is installed yet registers nothing, which version is
installed and why nothing registered.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import threading
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs

from wfe_core.errors import (
    ConfigurationError,
    PluginError,
    ProviderContractError,
    ProviderNotFoundError,
    WfeError,
)
from wfe_core.plugins import (
    DefinitionFormatSpec,
    ProviderKind,
    ProviderSpec,
    StepExecutorSpec,
)
from wfe_core.providers import (
    LifecyclePublisher,
    LockProvider,
    PersistenceProvider,
    Provider,
    QueueProvider,
    SearchIndex,
)
from wfe_host.plugins import make_plugin_manager
from wfe_host.settings import SettingsError, SettingsProblem, structure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from wfe_core.spi import PluginInfo, PluginManager
    from wfe_host.settings import ProviderSettings

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: The providers WFE publishes: name → (distribution, kinds it offers).
KNOWN_PROVIDERS: Mapping[str, tuple[str, frozenset[ProviderKind]]] = {
    "sqlite": (
        "wfe-sqlite",
        frozenset({ProviderKind.PERSISTENCE, ProviderKind.LOCK, ProviderKind.QUEUE}),
    ),
    "postgres": (
        "wfe-postgres",
        frozenset({ProviderKind.PERSISTENCE, ProviderKind.LOCK, ProviderKind.QUEUE}),
    ),
    "valkey": (
        "wfe-valkey",
        frozenset({ProviderKind.LOCK, ProviderKind.QUEUE, ProviderKind.LIFECYCLE}),
    ),
    "opensearch": ("wfe-opensearch", frozenset({ProviderKind.SEARCH})),
}

#: URL schemes of the providers WFE publishes: scheme → provider name.
KNOWN_SCHEMES: Mapping[str, str] = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "valkey": "valkey",
    "valkeys": "valkey",
    "redis": "valkey",
    "rediss": "valkey",
    "http": "opensearch",
    "https": "opensearch",
}

#: Step types and definition-file suffixes of the distributions WFE publishes.
KNOWN_STEP_TYPES: Mapping[str, str] = {
    "shell": "wfe-yaml",
    "deno": "wfe-yaml",
    "workflow": "wfe-yaml",
}
KNOWN_SUFFIXES: Mapping[str, str] = {".yaml": "wfe-yaml", ".yml": "wfe-yaml"}

#: The class every provider of a kind must be an instance of.
PROVIDER_CLASSES: Mapping[ProviderKind, type[Provider]] = {
    ProviderKind.PERSISTENCE: PersistenceProvider,
    ProviderKind.LOCK: LockProvider,
    ProviderKind.QUEUE: QueueProvider,
    ProviderKind.SEARCH: SearchIndex,
    ProviderKind.LIFECYCLE: LifecyclePublisher,
}


@attrs.frozen
class InstalledDistribution:
    """What :class:`PluginRegistry` needs to know of an installed distribution for a hint."""

    version: str
    #: Whether it declares an entry point of group ``wfe`` (a plugin, loaded or not).
    has_plugin: bool


def find_distribution(name: str) -> InstalledDistribution | None:
    """The installed distribution ``name``, or ``None`` when it is not installed."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    has_plugin = any(ep.group == "wfe" for ep in dist.entry_points)
    return InstalledDistribution(dist.version, has_plugin)


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f". Did you mean {close[0]!r}?" if close else ""


@attrs.frozen
class RegisteredProvider:
    """A provider spec and the plugin (and distribution) that offered it."""

    spec: ProviderSpec
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def kind(self) -> ProviderKind:
        """The concern this provider serves."""
        return self.spec.kind

    @property
    def name(self) -> str:
        """The name settings select it by."""
        return self.spec.name

    def describe(self) -> str:
        """``'name' (plugin 'p', distribution version)`` for messages."""
        return f"{self.name!r} ({_origin(self.plugin, self.distribution, self.version)})"


@attrs.frozen
class RegisteredStepExecutor:
    """A step-executor spec and the plugin (and distribution) that offered it."""

    spec: StepExecutorSpec
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def name(self) -> str:
        """The ``type:`` name of the step."""
        return self.spec.name


@attrs.frozen
class RegisteredDefinitionFormat:
    """A definition-format spec and the plugin (and distribution) that offered it."""

    spec: DefinitionFormatSpec
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def name(self) -> str:
        """The format's name."""
        return self.spec.name

    @property
    def suffixes(self) -> tuple[str, ...]:
        """Its file suffixes, lower case, each with its leading dot."""
        return tuple(_suffix(s) for s in self.spec.suffixes)


def _origin(plugin: str, distribution: str | None, version: str | None) -> str:
    if distribution is None:
        return f"plugin {plugin!r}"
    return f"plugin {plugin!r}, {distribution} {version}"


def _check_capabilities(kind: ProviderKind, entry: RegisteredProvider, cls: type[Provider]) -> None:
    """The spec repeats its class's capabilities (so listings need not import the class); a
    spec that drifted from its class would make ``wfe providers`` and the host disagree."""
    declared, actual = entry.spec.capabilities, cls.capabilities
    if declared == actual:
        return
    differences = []
    if declared - actual:
        differences.append(f"only the spec declares {', '.join(sorted(declared - actual))}")
    if actual - declared:
        differences.append(f"only the class declares {', '.join(sorted(actual - declared))}")
    raise ProviderContractError(
        f"{kind} provider {entry.describe()}: its ProviderSpec's capabilities differ from those "
        f"of its class {cls.__module__}.{cls.__qualname__} ({'; '.join(differences)}); "
        "make them equal"
    )


def _suffix(suffix: str) -> str:
    suffix = suffix.lower()
    return suffix if suffix.startswith(".") else f".{suffix}"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_scheme(url: str) -> str:
    """The lower-case scheme of ``url``; :class:`ConfigurationError` when it has none."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigurationError(f"{redact_url(url)!r} is not a valid URL: {exc}") from exc
    if not scheme:
        raise ConfigurationError(
            f"{redact_url(url)!r} is not a URL; expected <scheme>://..., e.g. sqlite:///wfe.db"
        )
    return scheme


def _kind(kind: ProviderKind | str) -> ProviderKind:
    try:
        return ProviderKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in ProviderKind)
        raise ConfigurationError(f"unknown provider kind {kind!r}; known: {known}") from None


class PluginRegistry:
    """What the plugins of a :class:`~wfe_core.spi.PluginManager` offer.

    Every hook is called once, when the registry is built; records are validated then, so a
    broken plugin fails at start-up with its name rather than later with a confusing error.
    """

    def __init__(
        self,
        manager: PluginManager,
        *,
        installed: Callable[[str], InstalledDistribution | None] = find_distribution,
    ) -> None:
        """``installed`` looks up an installed distribution by name; the hints of unknown
        names use it (tests give a registry a world of their own)."""
        self._manager = manager
        self._installed_distribution = installed
        self._providers: dict[tuple[ProviderKind, str], RegisteredProvider] = {}
        self._step_executors: dict[str, RegisteredStepExecutor] = {}
        self._formats: list[RegisteredDefinitionFormat] = []
        self._collect()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PluginRegistry:
        """A registry over the built-in and installed plugins, as the ``WFE_*`` plugin
        switches in ``environ`` (default: ``os.environ``) allow."""
        return cls(make_plugin_manager(environ))

    @property
    def manager(self) -> PluginManager:
        """The plugin manager the registry was built from."""
        return self._manager

    # -- collecting ---------------------------------------------------------------------------

    def collect(self, hook_name: str, record_type: type[R]) -> list[tuple[str, R]]:
        """(plugin name, record) for each record each plugin's ``hook_name`` returns.

        Each plugin's implementation is called on its own so every record is attributed to
        its plugin. Raises :class:`~wfe_core.errors.PluginError` naming the plugin when a
        hook fails or returns anything but a list of ``record_type``.
        """
        pm = self._manager
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        found: list[tuple[str, R]] = []
        # Oldest registration first, so that listings follow plugin order.
        for impl in impls:
            name = impl.plugin_name
            others = [i.plugin for i in impls if i is not impl]
            # A subset caller (not impl.function) so that hook tracing still sees the call.
            caller = pm.subset_hook_caller(hook_name, remove_plugins=others)
            # Part of WFE_TRACE_PLUGINS output (written only when tracing is on), since
            # pluggy's own trace line does not say whose implementation runs.
            pm.trace.root.get("hook")(f"calling {hook_name} of {pm.describe(name)}")
            try:
                results: list[Any] = caller()
            except ProviderContractError as exc:
                # A record it built broke its contract (an unknown capability): say whose.
                raise type(exc)(f"{pm.describe(name)}: {hook_name}: {exc}") from exc
            except Exception as exc:
                raise PluginError(
                    f"{pm.describe(name)} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
            for result in results:
                if not isinstance(result, list | tuple):
                    raise PluginError(
                        f"{pm.describe(name)}: {hook_name} must return a list of "
                        f"{record_type.__name__}, got {type(result).__name__}"
                    )
                for record in result:
                    if not isinstance(record, record_type):
                        raise PluginError(
                            f"{pm.describe(name)}: {hook_name} returned "
                            f"{type(record).__name__}, expected {record_type.__name__}"
                        )
                    found.append((name, record))
        return found

    def _origin_of(self, plugin: str) -> tuple[str | None, str | None]:
        info = self._manager.plugin_info(plugin)
        return info.distribution, info.version

    def _collect(self) -> None:
        for plugin, spec in self.collect("register_providers", ProviderSpec):
            try:
                kind = ProviderKind(spec.kind)
            except ValueError:
                raise PluginError(
                    f"{self._manager.describe(plugin)}: provider {spec.name!r} has unknown "
                    f"kind {spec.kind!r}"
                ) from None
            if not isinstance(spec.name, str) or not spec.name or spec.name != spec.name.strip():
                raise PluginError(
                    f"{self._manager.describe(plugin)}: invalid provider name {spec.name!r}"
                )
            entry = RegisteredProvider(
                attrs.evolve(spec, kind=kind), plugin, *self._origin_of(plugin)
            )
            key = (kind, spec.name)
            if key in self._providers:
                other = self._providers[key]
                raise PluginError(
                    f"{kind} provider {spec.name!r} is offered twice: by "
                    f"{_origin(other.plugin, other.distribution, other.version)} and by "
                    f"{_origin(plugin, entry.distribution, entry.version)}; uninstall one of "
                    "them or block one with WFE_BLOCK_PLUGINS"
                )
            self._providers[key] = entry
        for plugin, executor in self.collect("register_step_executors", StepExecutorSpec):
            step = RegisteredStepExecutor(executor, plugin, *self._origin_of(plugin))
            if executor.name in self._step_executors:
                other_step = self._step_executors[executor.name]
                raise PluginError(
                    f"step type {executor.name!r} is offered twice: by "
                    f"{_origin(other_step.plugin, other_step.distribution, other_step.version)}"
                    f" and by {_origin(plugin, step.distribution, step.version)}"
                )
            self._step_executors[executor.name] = step
        for plugin, fmt in self.collect("register_definition_formats", DefinitionFormatSpec):
            entry_fmt = RegisteredDefinitionFormat(fmt, plugin, *self._origin_of(plugin))
            for existing in self._formats:
                clash = set(existing.suffixes) & set(entry_fmt.suffixes)
                if clash:
                    raise PluginError(
                        f"definition file suffix {sorted(clash)[0]!r} is claimed twice: by "
                        f"{_origin(existing.plugin, existing.distribution, existing.version)} "
                        f"and by {_origin(plugin, entry_fmt.distribution, entry_fmt.version)}"
                    )
            self._formats.append(entry_fmt)
        logger.debug(
            "registry: %d providers, %d step types, %d definition formats",
            len(self._providers),
            len(self._step_executors),
            len(self._formats),
        )

    # -- providers ----------------------------------------------------------------------------

    def providers(self, kind: ProviderKind | str | None = None) -> list[RegisteredProvider]:
        """Every provider (of ``kind``, when given), sorted by kind then name."""
        wanted = None if kind is None else _kind(kind)
        order = {k: i for i, k in enumerate(ProviderKind)}
        return sorted(
            (p for p in self._providers.values() if wanted is None or p.kind == wanted),
            key=lambda p: (order[p.kind], p.name),
        )

    def has_provider(self, kind: ProviderKind | str, name: str) -> bool:
        """Whether a provider of ``kind`` named ``name`` is installed."""
        return (_kind(kind), name) in self._providers

    def provider(self, kind: ProviderKind | str, name: str) -> RegisteredProvider:
        """The provider of ``kind`` named ``name``.

        Raises :class:`~wfe_core.errors.ProviderNotFoundError` listing the installed names
        and, for a provider WFE publishes, the distribution to install.
        """
        k = _kind(kind)
        entry = self._providers.get((k, name))
        if entry is None:
            raise ProviderNotFoundError(
                f"unknown {k} provider {name!r}; installed: {self._installed(k)}"
                + self._install_hint(k, name)
            )
        return entry

    def provider_for_url(self, kind: ProviderKind | str, url: str) -> RegisteredProvider:
        """The provider of ``kind`` whose URL schemes include ``url``'s scheme.

        ``sqlite:///x.db`` selects ``sqlite``; ``postgresql://`` and ``postgres://`` select
        ``postgres``; ``valkey://`` and ``redis://`` select ``valkey``; ``http(s)://`` selects
        a search provider. Raises :class:`~wfe_core.errors.ProviderNotFoundError` when no
        installed provider claims the scheme, and ConfigurationError when several do.
        """
        k = _kind(kind)
        scheme = url_scheme(url)
        matches = [
            p for p in self.providers(k) if scheme in {s.lower() for s in p.spec.url_schemes}
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = " and ".join(m.describe() for m in matches)
            raise ConfigurationError(
                f"URL scheme {scheme!r} of {k} URL {redact_url(url)!r} is claimed by {names}; "
                f"set {k}.provider to choose one"
            )
        known = KNOWN_SCHEMES.get(scheme)
        hint = self._install_hint(k, known) if known is not None else ""
        raise ProviderNotFoundError(
            f"no {k} provider for URL scheme {scheme!r} ({redact_url(url)}); installed: "
            f"{self._installed(k, with_schemes=True)}" + hint
        )

    def provider_name_for_url(self, kind: ProviderKind | str, url: str) -> str | None:
        """The name of the provider ``url`` selects, or ``None`` (never raises)."""
        try:
            return self.provider_for_url(kind, url).name
        except WfeError:
            return None

    def _installed(self, kind: ProviderKind, *, with_schemes: bool = False) -> str:
        entries = self.providers(kind)
        if not entries:
            return "none"
        if not with_schemes:
            return ", ".join(e.name for e in entries)
        return ", ".join(
            f"{e.name} ({', '.join(f'{s}://' for s in e.spec.url_schemes)})"
            if e.spec.url_schemes
            else e.name
            for e in entries
        )

    def _install_hint(self, kind: ProviderKind, name: str) -> str:
        offered = sorted(
            (k for k in ProviderKind if (k, name) in self._providers),
            key=list(ProviderKind).index,
        )
        if offered:
            kinds = ", ".join(offered)
            return f". {name!r} is installed but provides {kinds}, not {kind}"
        known = KNOWN_PROVIDERS.get(name)
        if known is None:
            # A typo: of an installed name first, else of a provider WFE publishes.
            installed = [p.name for p in self.providers(kind)]
            publishable = [n for n, (_, kinds) in KNOWN_PROVIDERS.items() if kind in kinds]
            return _did_you_mean(name, installed) or _did_you_mean(name, publishable)
        distribution, kinds_known = known
        if kind not in kinds_known:
            kinds = ", ".join(k for k in ProviderKind if k in kinds_known)
            return f". {name!r} ({distribution}) provides {kinds}, not {kind}"
        return self._distribution_hint(distribution, f"{name} {kind} provider")

    def _distribution_hint(self, distribution: str, what: str) -> str:
        """Install ``distribution``; or, when it is installed, why it registered no ``what``."""
        installed = self._installed_distribution(distribution)
        if installed is None:
            return f". Install it with: pip install {distribution}"
        found = f". {distribution} {installed.version} is installed but registers no {what}"
        if installed.has_plugin:
            return (
                f"{found}: its plugin is not loaded (see WFE_DISABLE_PLUGIN_AUTOLOAD, "
                "WFE_PLUGINS and WFE_BLOCK_PLUGINS; `wfe plugins` lists what is loaded)"
            )
        return f"{found}: that version ships no plugin (see its README for what it provides)"

    def select(self, kind: ProviderKind | str, settings: ProviderSettings) -> RegisteredProvider:
        """The provider ``settings`` select: by ``provider`` name, else by ``url`` scheme."""
        k = _kind(kind)
        if settings.provider is not None:
            entry = self.provider(k, settings.provider)
            if settings.url is not None:
                self._check_url_fits(k, entry, settings.url)
            return entry
        if settings.url is not None:
            return self.provider_for_url(k, settings.url)
        raise ConfigurationError(f"{k}: no provider selected; set {k}.provider or {k}.url")

    def _check_url_fits(self, kind: ProviderKind, entry: RegisteredProvider, url: str) -> None:
        """A URL whose scheme the named provider does not claim is a conflict: silently
        using the provider would ignore the URL (``memory`` with ``sqlite:///x.db`` stores
        nothing where the user meant it to). A provider that claims no schemes takes any."""
        claimed = {s.lower() for s in entry.spec.url_schemes}
        if not claimed:
            return
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            return  # the provider reports its own URL errors
        if scheme in claimed:
            return
        takes = ", ".join(f"{s}://" for s in sorted(claimed))
        owner = self.provider_name_for_url(kind, url)
        belongs = f"; {scheme}:// URLs select {owner!r}" if owner is not None else ""
        raise SettingsError(
            [
                SettingsProblem(
                    f"{kind}.url",
                    f"conflicts with {kind}.provider {entry.name!r}: {entry.name} takes "
                    f"{takes} URLs, not {redact_url(url)!r}{belongs}; set one of them only",
                )
            ]
        )

    def create(self, kind: ProviderKind | str, settings: ProviderSettings) -> Provider:
        """Build (not enter) the provider ``settings`` select.

        ``settings.options`` is structured into the spec's ``options_class`` (errors name the
        field path, e.g. ``persistence.options.pool_size: expected an integer, got 'x'``), then
        ``spec.factory(settings.url, options)`` is called.

        The provider's contract is checked here, so a broken plugin fails when the host is
        created: an abstract class (a method of its contract left out) or an unknown capability
        raises :class:`~wfe_core.errors.ProviderContractError` naming the plugin, the class
        and what is missing, and so does a spec whose ``capabilities`` differ from its
        class's.
        """
        k = _kind(kind)
        entry = self.select(k, settings)
        spec = entry.spec
        options: Any = None
        if spec.options_class is None:
            if settings.options:
                raise SettingsError(
                    [
                        SettingsProblem(
                            f"{k}.options.{key}",
                            f"unknown key (the {k} provider {spec.name!r} takes no options)",
                        )
                        for key in sorted(settings.options)
                    ]
                )
        else:
            options = structure(settings.options, spec.options_class, (k.value, "options"))
        try:
            provider = spec.factory(settings.url, options)
        except ProviderContractError as exc:
            # An abstract class, or a class declaring an unknown capability: name the plugin.
            raise type(exc)(f"{k} provider {entry.describe()}: {exc}") from exc
        except WfeError:
            raise
        except ImportError as exc:
            raise PluginError(
                f"{k} provider {entry.describe()} cannot import what it needs: {exc}"
            ) from exc
        except Exception as exc:
            raise ConfigurationError(
                f"{k}: provider {entry.describe()} rejected its settings: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        expected = PROVIDER_CLASSES[k]
        if not isinstance(provider, expected):
            raise PluginError(
                f"{k} provider {entry.describe()} built a {type(provider).__name__}, which is "
                f"not a {expected.__name__}"
            )
        _check_capabilities(k, entry, type(provider))
        return provider

    # -- step executors and definition formats ------------------------------------------------

    def step_executors(self) -> list[RegisteredStepExecutor]:
        """Every step type, sorted by name."""
        return [self._step_executors[n] for n in sorted(self._step_executors)]

    def step_executor(self, name: str) -> RegisteredStepExecutor:
        """The step type ``name`` (``ProviderNotFoundError`` listing installed ones if none)."""
        entry = self._step_executors.get(name)
        if entry is None:
            installed = ", ".join(sorted(self._step_executors)) or "none"
            if name in KNOWN_STEP_TYPES:
                hint = self._distribution_hint(KNOWN_STEP_TYPES[name], f"{name} step type")
            else:
                hint = _did_you_mean(name, [*self._step_executors, *KNOWN_STEP_TYPES])
            raise ProviderNotFoundError(f"unknown step type {name!r}; installed: {installed}{hint}")
        return entry

    def definition_formats(self) -> list[RegisteredDefinitionFormat]:
        """Every definition format, in plugin registration order."""
        return list(self._formats)

    def definition_format_for(self, path: str | os.PathLike[str]) -> RegisteredDefinitionFormat:
        """The format whose suffix ends ``path``'s file name (the longest suffix wins, so
        ``.wfe.yaml`` can be told apart from ``.yaml``)."""
        file_name = PurePath(path).name.lower()
        best: tuple[int, RegisteredDefinitionFormat] | None = None
        for fmt in self._formats:
            for suffix in fmt.suffixes:
                if file_name.endswith(suffix) and (best is None or len(suffix) > best[0]):
                    best = (len(suffix), fmt)
        if best is not None:
            return best[1]
        suffix = PurePath(file_name).suffix or file_name
        installed = ", ".join(s for f in self._formats for s in f.suffixes) or "none"
        hint = ""
        if suffix in KNOWN_SUFFIXES:
            hint = self._distribution_hint(KNOWN_SUFFIXES[suffix], f"{suffix} definition format")
        raise ProviderNotFoundError(
            f"no definition format for {os.fspath(path)!r}; installed suffixes: {installed}{hint}"
        )

    # -- plugins ------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin, sorted by name."""
        return self._manager.plugin_infos()


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> PluginRegistry:
    """The registry of this process, built on first use from ``os.environ``'s switches."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PluginRegistry.from_environ()
        return _default


def set_default_registry(registry: PluginRegistry | None) -> None:
    """Make ``registry`` the process's registry (``None``: rebuild on next use).

    For tests and embedders that build their own registry, e.g. with a plugin object
    registered for one test; :func:`wfe_host.bootstrap.resolve` and ``wfe`` then use it.
    """
    global _default
    with _default_lock:
        _default = registry


def reset_default_registry() -> None:
    """Forget the process's registry, so the next :func:`default_registry` rebuilds it
    (for tests that change installed plugins or the ``WFE_*`` plugin switches)."""
    global _default
    with _default_lock:
        _default = None
