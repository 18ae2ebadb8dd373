"""The ``wfe`` commands' own settings defaults: where workflows are stored when nothing says.

Every command that opens a host resolves its settings with :func:`resolve_cli_settings` (or
passes :func:`cli_defaults` to :meth:`~wfe_host.cli.CliState.resolve` itself), so ``wfe run``,
``wfe worker`` and ``wfe workflows`` started in the same directory share one store without any
configuration: an embedded SQLite file, ``.wfe/wfe.db``, when wfe-sqlite is installed, else
memory (which keeps nothing between commands; :func:`memory_warning` says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfe_core.errors import ConfigurationError
from wfe_core.plugins import ProviderKind
from wfe_host.settings import DEFAULTS_SOURCE

if TYPE_CHECKING:
    from wfe_host.bootstrap import ResolvedSettings
    from wfe_host.cli.state import CliState
    from wfe_host.registry import PluginRegistry

__all__ = [
    "DEFAULT_DIRECTORY",
    "DEFAULT_SQLITE_URL",
    "cli_defaults",
    "is_memory",
    "memory_warning",
    "resolve_cli_settings",
    "uses_default_store",
]

#: The directory (relative to the working directory) of the CLI's default store.
DEFAULT_DIRECTORY = Path(".wfe")
#: The CLI's default persistence when the ``sqlite`` provider is installed (relative path).
DEFAULT_SQLITE_URL = "sqlite:///.wfe/wfe.db"
#: The provider that keeps nothing between processes.
_MEMORY = "memory"


def cli_defaults(registry: PluginRegistry) -> dict[str, Any]:
    """The settings defaults of ``wfe`` commands, for ``resolve(..., defaults=...)``.

    ``{"persistence": "sqlite:///.wfe/wfe.db"}`` when the ``sqlite`` persistence provider is
    installed (lock and queue then follow it), else nothing (so memory). They sit below every
    other source: any configured persistence replaces them.
    """
    if registry.has_provider(ProviderKind.PERSISTENCE, "sqlite"):
        return {"persistence": DEFAULT_SQLITE_URL}
    return {}


def uses_default_store(resolved: ResolvedSettings) -> bool:
    """True when persistence is the default SQLite file (its URL came from the defaults)."""
    return resolved.origins.get("persistence.url") == DEFAULTS_SOURCE


def is_memory(resolved: ResolvedSettings) -> bool:
    """True when workflows are kept in this process's memory only."""
    return resolved.settings.persistence.provider == _MEMORY


def memory_warning(resolved: ResolvedSettings) -> str | None:
    """A warning for commands that read or write stored state when the store is memory:
    another ``wfe`` process never sees what this one stores, and vice versa."""
    if not is_memory(resolved):
        return None
    if resolved.origins.get("persistence", DEFAULTS_SOURCE) != DEFAULTS_SOURCE:
        why = "persistence is memory"
    else:
        why = "no persistence is configured and wfe-sqlite is not installed, so it is memory"
    return (
        f"{why}: nothing is shared with other wfe commands or kept after this one; "
        "set --persistence (or WFE_PERSISTENCE) or install wfe-sqlite"
    )


def resolve_cli_settings(state: CliState) -> ResolvedSettings:
    """Providers from the command line, ``WFE_*`` variables, the settings file and
    :func:`cli_defaults`; creates the default store's directory when it is used."""
    resolved = state.resolve(defaults=cli_defaults(state.get_registry()))
    if uses_default_store(resolved):
        _make_default_directory()
    return resolved


def _make_default_directory() -> None:
    if DEFAULT_DIRECTORY.is_dir():
        return
    try:
        DEFAULT_DIRECTORY.mkdir(parents=True, exist_ok=True)
        # Like .pytest_cache or .mypy_cache: local state no one wants in version control.
        (DEFAULT_DIRECTORY / ".gitignore").write_text(
            "# Created by wfe: the default workflow store of this directory.\n*\n",
            encoding="utf-8",
        )
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create {DEFAULT_DIRECTORY}/ for the default store {DEFAULT_SQLITE_URL}: "
            f"{exc.strerror or exc}; set --persistence (or WFE_PERSISTENCE)"
        ) from exc
