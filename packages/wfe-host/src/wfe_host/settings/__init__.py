"""Settings by name: which provider serves each concern, and the host's own options.

Settings come from four sources, highest first:

1. explicit values (a mapping or keyword arguments given to
   :func:`wfe_host.bootstrap.resolve`, or ``wfe`` command-line options),
2. ``WFE_*`` environment variables,
3. a TOML file: the path given, else ``$WFE_CONFIG``, else ``wfe.toml`` in the current
   directory, else the ``[tool.wfe]`` table of ``pyproject.toml`` in the current directory,
4. defaults.

They are merged field by field: an environment URL overrides a file's URL and keeps the file's
options. A source that selects a *different* provider for a concern replaces that concern's
lower-priority values altogether, since one provider's options mean nothing to another.

Everything is structured with a strict cattrs converter, so a mistake is reported with its field
path and the source it came from, e.g. ``wfe.toml: host.concurrency: must be >= 1, got 0``.
See ``docs/settings.md`` for every key and environment variable.

Every public name is here; the modules behind them are internal: ``_models`` (the settings
classes), ``_problems`` (:class:`SettingsError` and its problems), ``_converter`` (the strict
converter; errors gathered with :func:`cattrs.transform_error`), ``_layers`` (a source's
values and the layer of a mapping), ``_environment`` (``WFE_*`` variables and ``*_FILE``
secrets), ``_files`` (``wfe.toml`` and ``pyproject.toml``), ``_merge`` and ``_load``.
"""

from __future__ import annotations

from wfe_host.settings._converter import settings_converter, structure
from wfe_host.settings._environment import MAX_SECRET_FILE_BYTES, layer_from_environ
from wfe_host.settings._files import ENV_CONFIG, find_settings_file, read_toml
from wfe_host.settings._layers import EXPLICIT_SOURCE, SettingsLayer, is_url, layer_from_mapping
from wfe_host.settings._load import DEFAULTS_SOURCE, LoadedSettings, load_settings, settings_layers
from wfe_host.settings._merge import ProviderOfUrl, merge_layers
from wfe_host.settings._models import CONCERNS, HostSettings, ProviderSettings
from wfe_host.settings._problems import SettingsError, SettingsProblem, source_of

__all__ = [
    "CONCERNS",
    "DEFAULTS_SOURCE",
    "ENV_CONFIG",
    "EXPLICIT_SOURCE",
    "MAX_SECRET_FILE_BYTES",
    "HostSettings",
    "LoadedSettings",
    "ProviderOfUrl",
    "ProviderSettings",
    "SettingsError",
    "SettingsLayer",
    "SettingsProblem",
    "find_settings_file",
    "is_url",
    "layer_from_environ",
    "layer_from_mapping",
    "load_settings",
    "merge_layers",
    "read_toml",
    "settings_converter",
    "settings_layers",
    "source_of",
    "structure",
]
