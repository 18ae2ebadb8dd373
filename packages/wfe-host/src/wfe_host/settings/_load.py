"""Reading every source, merging and structuring: :func:`load_settings`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from wfe_core.errors import ConfigurationError
from wfe_host.settings._converter import structure
from wfe_host.settings._environment import layer_from_environ
from wfe_host.settings._files import find_settings_file, read_toml
from wfe_host.settings._layers import SettingsLayer, layer_from_mapping
from wfe_host.settings._merge import ProviderOfUrl, merge_layers
from wfe_host.settings._models import HostSettings
from wfe_host.settings._problems import SettingsError, source_of

#: Source label of defaults passed by a caller (the CLI's own defaults, for instance).
DEFAULTS_SOURCE = "defaults"


@attrs.frozen
class LoadedSettings:
    """Merged settings and the source of each value (dotted path → source label)."""

    settings: HostSettings
    origins: Mapping[str, str]

    def source_of(self, path: str) -> str | None:
        """The label of the source that set ``path`` (or its nearest parent)."""
        return source_of(path, self.origins)


def settings_layers(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[SettingsLayer]:
    """The layers of every source, lowest priority first (see :mod:`wfe_host.settings`)."""
    env = os.environ if environ is None else environ
    layers: list[SettingsLayer] = []
    if defaults:
        layers.append(layer_from_mapping(defaults, DEFAULTS_SOURCE))
    if isinstance(source, str | os.PathLike):
        layers.append(read_toml(source))
    else:
        found = find_settings_file(env)
        if found is not None:
            layers.append(read_toml(found))
    layers.append(layer_from_environ(env))
    if isinstance(source, Mapping):
        layers.append(layer_from_mapping(source))
    elif source is not None and not isinstance(source, str | os.PathLike):
        raise ConfigurationError(
            f"settings must be a mapping or a file path, got {type(source).__name__}"
        )
    if overrides:
        layers.append(layer_from_mapping(overrides))
    return layers


def load_settings(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    provider_of_url: ProviderOfUrl | None = None,
    **overrides: Any,
) -> LoadedSettings:
    """Read, merge and structure settings from every source.

    ``source`` is a mapping of explicit settings or the path of a TOML file; ``overrides``
    are explicit settings too (``persistence="sqlite:///wfe.db"``). ``defaults`` sit below
    every source. ``provider_of_url`` lets the merge tell which provider a URL selects.
    Nothing is checked against installed providers here; see :func:`wfe_host.bootstrap.resolve`.
    """
    layers = settings_layers(source, environ=environ, defaults=defaults, overrides=overrides)
    merged = merge_layers(layers, provider_of_url)
    try:
        settings = structure(merged.data, HostSettings)
    except SettingsError as exc:
        raise exc.with_sources(merged.origins) from exc.__cause__
    return LoadedSettings(settings, dict(merged.origins))
