"""Plugin discovery: a pluggy plugin manager for the ``wfe`` project.

The manager knows the hooks of :mod:`wfe_core.plugins.hookspecs` (and any further hookspec
modules its user adds, as wfe-host does for CLI commands), always holds the built-in in-memory
plugin (named ``memory``), and loads every installed distribution's entry point of group
``wfe`` unless told otherwise by the environment:

``WFE_DISABLE_PLUGIN_AUTOLOAD=1``
    Load no entry points (only the built-in plugin, and those named in ``WFE_PLUGINS``).
``WFE_PLUGINS=name1,name2``
    Load only these entry points, even when autoloading is disabled.
``WFE_BLOCK_PLUGINS=name1,name2``
    Never load (or register) plugins of these names.
``WFE_TRACE_PLUGINS=1``
    Log every hook call at DEBUG level on the ``wfe_core.plugins.manager`` logger.

The names mirror pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` and ``PYTEST_PLUGINS``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
from typing import TYPE_CHECKING

import attrs
import pluggy

from wfe_core.errors import ConfigurationError, PluginError
from wfe_core.plugins import PROJECT_NAME
from wfe_core.plugins import hookspecs as core_hookspecs

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping
    from types import ModuleType

# Named, not __name__: the logger name is what users configure, and the module may move.
logger = logging.getLogger("wfe_core.plugins.manager")

#: The entry-point group plugins register under (the pluggy project name).
ENTRY_POINT_GROUP = PROJECT_NAME

#: Environment variable: load no entry points when true.
ENV_DISABLE_AUTOLOAD = "WFE_DISABLE_PLUGIN_AUTOLOAD"
#: Environment variable: comma-separated entry-point names to load (and only those).
ENV_PLUGINS = "WFE_PLUGINS"
#: Environment variable: comma-separated plugin names never to load.
ENV_BLOCK_PLUGINS = "WFE_BLOCK_PLUGINS"
#: Environment variable: log hook calls at DEBUG level when true.
ENV_TRACE_PLUGINS = "WFE_TRACE_PLUGINS"

#: Plugins registered by the host itself: (plugin name, module, distribution).
BUILTIN_PLUGINS: tuple[tuple[str, str, str], ...] = (
    ("memory", "wfe_core.memory._plugin", "wfe-core"),
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """The boolean value of environment variable ``name`` (unset or empty is false).

    Raises :class:`~wfe_core.errors.ConfigurationError` for a value that is not one of
    ``1/0``, ``true/false``, ``yes/no``, ``on/off`` rather than guessing what was meant.
    """
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(
        f"environment {name}: expected 1/0, true/false, yes/no or on/off, got {value!r}"
    )


def _env_names(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in environ.get(name, "").split(",") if part.strip())


@attrs.frozen
class PluginLoadOptions:
    """Which plugins :func:`make_plugin_manager` loads."""

    #: Load every installed entry point of group ``wfe``.
    autoload: bool = True
    #: When set, load only the entry points of these names (even if ``autoload`` is false).
    allow: tuple[str, ...] | None = None
    #: Plugin names never to load or register.
    block: tuple[str, ...] = ()
    #: Log hook calls at DEBUG level.
    trace: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PluginLoadOptions:
        """The options the ``WFE_*PLUGIN*`` environment variables ask for."""
        env = os.environ if environ is None else environ
        allow = _env_names(env, ENV_PLUGINS)
        return cls(
            autoload=not env_flag(env, ENV_DISABLE_AUTOLOAD),
            allow=allow or None,
            block=_env_names(env, ENV_BLOCK_PLUGINS),
            trace=env_flag(env, ENV_TRACE_PLUGINS),
        )


@attrs.frozen
class PluginInfo:
    """One registered plugin, as ``wfe plugins`` shows it."""

    #: The plugin's name: its entry-point name, or ``memory`` for the built-in plugin.
    name: str
    #: The distribution that installed it (``None`` for a plugin registered by code).
    distribution: str | None
    #: That distribution's version.
    version: str | None
    #: The hooks the plugin implements, sorted.
    hooks: tuple[str, ...]
    #: The plugin's module name (or its object's type name when it is not a module).
    module: str
    #: Registered by the host itself rather than found through an entry point.
    builtin: bool = False

    def describe(self) -> str:
        """``plugin 'name' (distribution version)`` for messages."""
        if self.distribution is None:
            return f"plugin {self.name!r}"
        return f"plugin {self.name!r} ({self.distribution} {self.version})"


def _normalize(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _dist_version(dist_name: str) -> str | None:
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


class PluginManager(pluggy.PluginManager):
    """The ``wfe`` pluggy manager: knows every ``wfe`` hook and where each plugin came from.

    Build one with :func:`make_plugin_manager`; a fresh ``PluginManager()`` holds no plugins,
    which is what tests that register their own plugin objects want.
    """

    def __init__(self, hookspecs: Iterable[ModuleType] = ()) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(core_hookspecs)
        for module in hookspecs:
            self.add_hookspecs(module)
        # plugin name -> (distribution, version, builtin); kept here because pluggy only
        # records distributions for plugins it loads itself.
        self._origins: dict[str, tuple[str | None, str | None, bool]] = {}

    def register_plugin(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> bool:
        """Register ``plugin`` (a module or any object with hookimpls) under ``name``.

        Returns false when ``name`` is blocked. Raises :class:`~wfe_core.errors.PluginError`
        when the name is taken, a hookimpl's signature does not match its hook, or the plugin
        implements a hook that does not exist (mark it ``optionalhook=True`` to allow that).
        """
        if self.has_plugin(name):
            raise PluginError(
                f"plugin name {name!r} is taken twice: by {self.plugin_info(name).describe()} "
                f"and by {_describe(name, distribution, version)}; uninstall one of them"
            )
        try:
            registered = self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            # pluggy's message spans lines; errors here are one line (the CLI prints one).
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginError(
                f"{_describe(name, distribution, version)} is invalid: {detail}"
            ) from exc
        except ValueError as exc:  # the same object registered twice under another name
            raise PluginError(f"{_describe(name, distribution, version)}: {exc}") from exc
        if registered is None:
            logger.debug("plugin %r is blocked; not registered", name)
            return False
        self._origins[name] = (distribution, version, builtin)
        unknown = self._unknown_hooks(plugin)
        if unknown:
            self.unregister(plugin)
            del self._origins[name]
            known = ", ".join(sorted(h for h in vars(self.hook) if not h.startswith("_")))
            raise PluginError(
                f"{_describe(name, distribution, version)} implements unknown hook(s) "
                f"{', '.join(unknown)}; known hooks: {known} (mark a hook of a newer wfe "
                "version with @hookimpl(optionalhook=True))"
            )
        logger.debug("registered %s", _describe(name, distribution, version))
        return True

    def _unknown_hooks(self, plugin: object) -> list[str]:
        unknown = []
        for caller in self.get_hookcallers(plugin) or ():
            if caller.has_spec():
                continue
            impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
            if any(not i.optionalhook for i in impls):
                unknown.append(caller.name)
        return sorted(unknown)

    def plugin_info(self, name: str) -> PluginInfo:
        """What is known about the registered plugin ``name`` (``KeyError`` if none)."""
        plugin = self.get_plugin(name)
        if plugin is None:
            raise KeyError(name)
        distribution, version, builtin = self._origins.get(name, (None, None, False))
        hooks = tuple(sorted(c.name for c in self.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", None)
        if not isinstance(module, str):
            module = type(plugin).__qualname__
        return PluginInfo(name, distribution, version, hooks, module, builtin)

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin, sorted by name."""
        names = [name for name, plugin in self.list_name_plugin() if plugin is not None]
        return [self.plugin_info(name) for name in sorted(names)]

    def describe(self, name: str) -> str:
        """``plugin 'name' (distribution version)`` for messages about plugin ``name``."""
        if not self.has_plugin(name):
            return f"plugin {name!r}"
        return self.plugin_info(name).describe()

    def register_builtins(self) -> None:
        """Register the plugins that ship with the host (the in-memory providers)."""
        for name, module_name, distribution in BUILTIN_PLUGINS:
            if self.is_blocked(name):
                logger.debug("built-in plugin %r is blocked", name)
                continue
            module = importlib.import_module(module_name)
            self.register_plugin(
                module,
                name,
                distribution=distribution,
                version=_dist_version(distribution),
                builtin=True,
            )

    def load_entry_points(self, names: Collection[str] | None = None) -> list[str]:
        """Import and register installed entry points of group ``wfe``.

        ``names`` limits loading to those entry-point names; naming one that no installed
        distribution provides is an error (a typo in ``WFE_PLUGINS`` should not pass
        silently). Blocked names are skipped. Returns the names registered.

        A plugin module that fails to import raises :class:`~wfe_core.errors.PluginError`
        naming the plugin and its distribution, with the import error as its cause.
        """
        wanted = None if names is None else set(names)
        loaded: list[str] = []
        available: set[str] = set()
        seen: set[str] = set()
        for dist in importlib.metadata.distributions():
            # get_all, not [...]: a missing key warns (DeprecationWarning) on Python 3.12+.
            dist_name = (dist.metadata.get_all("Name") or [None])[0]
            if not dist_name:
                continue  # broken metadata; nothing sensible to name it by
            # A distribution found again on a later sys.path entry is shadowed by the first,
            # exactly as the import system shadows its modules.
            if _normalize(dist_name) in seen:
                continue
            seen.add(_normalize(dist_name))
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP:
                    continue
                available.add(ep.name)
                if wanted is not None and ep.name not in wanted:
                    continue
                if self.is_blocked(ep.name):
                    logger.debug("plugin %r from %s is blocked", ep.name, dist_name)
                    continue
                description = _describe(ep.name, dist_name, dist.version)
                if self.has_plugin(ep.name):
                    raise PluginError(
                        f"plugin name {ep.name!r} is taken twice: by "
                        f"{self.describe(ep.name)} and by {description}; uninstall one of them"
                    )
                try:
                    plugin = ep.load()
                except Exception as exc:
                    raise PluginError(
                        f"{description} failed to import {ep.value!r}: {type(exc).__name__}: {exc}"
                    ) from exc
                if self.register_plugin(
                    plugin, ep.name, distribution=dist_name, version=dist.version
                ):
                    loaded.append(ep.name)
        if wanted is not None:
            builtin_names = {name for name, _, _ in BUILTIN_PLUGINS}
            missing = sorted(wanted - available - builtin_names)
            if missing:
                installed = ", ".join(sorted(available)) or "none"
                raise PluginError(
                    f"{ENV_PLUGINS} names {', '.join(map(repr, missing))}, but no installed "
                    f"distribution has a {ENTRY_POINT_GROUP!r} entry point of that name; "
                    f"installed: {installed}"
                )
        return loaded

    def enable_trace_logging(self) -> None:
        """Log every hook call and its result at DEBUG level on this module's logger."""
        self.trace.root.setwriter(lambda message: logger.debug("%s", message.rstrip()))
        self.enable_tracing()


def _describe(name: str, distribution: str | None, version: str | None) -> str:
    if distribution is None:
        return f"plugin {name!r}"
    return f"plugin {name!r} ({distribution} {version})"


def make_plugin_manager(
    environ: Mapping[str, str] | None = None,
    *,
    options: PluginLoadOptions | None = None,
    hookspecs: Iterable[ModuleType] = (),
) -> PluginManager:
    """A plugin manager holding the built-in plugin and the installed ``wfe`` plugins.

    What gets loaded follows ``options``, or else the ``WFE_*`` switches in ``environ``
    (default: ``os.environ``); see the module docstring.
    """
    opts = PluginLoadOptions.from_environ(environ) if options is None else options
    pm = PluginManager(hookspecs)
    if opts.trace:
        pm.enable_trace_logging()
    for name in opts.block:
        pm.set_blocked(name)
    pm.register_builtins()
    if opts.allow is not None:
        pm.load_entry_points(opts.allow)
    elif opts.autoload:
        pm.load_entry_points()
    else:
        logger.debug("plugin autoloading is disabled (%s)", ENV_DISABLE_AUTOLOAD)
    return pm
