"""A settings layer (what one source sets) and the layer of a mapping or TOML table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from wfe_host.options import HostOptions
from wfe_host.settings._models import CONCERNS, ProviderSettings
from wfe_host.settings._problems import fail

#: Source label of explicit values (mappings and keyword arguments).
EXPLICIT_SOURCE = "settings"

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@attrs.define
class SettingsLayer:
    """The values one source sets, as plain nested dicts, and where each came from."""

    #: Label of the source (``settings``, ``environment``, a file name, ``defaults``).
    label: str
    #: ``{"persistence": {"url": ...}, "host": {...}}``: only what the source sets.
    data: dict[str, Any] = attrs.Factory(dict)
    #: Dotted path → label of the exact origin (``environment WFE_PERSISTENCE_URL``).
    origins: dict[str, str] = attrs.Factory(dict)


def is_url(value: str) -> bool:
    """True when ``value`` starts with a URL scheme (``sqlite:``, ``memory://``)."""
    return bool(_SCHEME.match(value))


def scheme_of(url: str) -> str | None:
    """The lower-case scheme of ``url`` (``sqlite``), ``None`` when it has none."""
    match = _SCHEME.match(url)
    return match.group(0)[:-1].lower() if match else None


def shorthand(value: str) -> dict[str, Any]:
    """The section a concern given as one string means: a URL, or a provider's name."""
    return {"url": value} if is_url(value) else {"provider": value}


def layer_from_mapping(mapping: Mapping[str, Any], label: str = EXPLICIT_SOURCE) -> SettingsLayer:
    """The layer of an explicit mapping (or a TOML table) of settings.

    A concern may be a string (a URL or a bare provider name), a mapping with ``provider``,
    ``url`` and ``options``, or a :class:`ProviderSettings`. ``host`` may be a mapping or a
    :class:`~wfe_host.options.HostOptions`. ``None`` values mean "not set here".
    """
    layer = SettingsLayer(label)
    for key, value in mapping.items():
        if value is None:
            continue
        if key in CONCERNS:
            section = _concern_section(value, label, key)
        elif key == "host":
            section = _host_section(value, label)
        else:
            # kept so that structuring reports it as an unknown key, with its source
            layer.data[key] = value
            layer.origins[key] = label
            continue
        layer.data[key] = section
        record_origins(layer.origins, key, section, label)
    return layer


def _concern_section(value: Any, label: str, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        return shorthand(value)
    if isinstance(value, ProviderSettings):
        section: dict[str, Any] = {"options": dict(value.options)} if value.options else {}
        if value.provider is not None:
            section["provider"] = value.provider
        if value.url is not None:
            section["url"] = value.url
        return section
    if isinstance(value, Mapping):
        section = {k: v for k, v in value.items() if v is not None}
        options = section.get("options")
        if isinstance(options, Mapping):
            section["options"] = dict(options)
        return section
    raise fail(
        label, key, f"expected a URL or provider name, or a table, got {type(value).__name__}"
    )


def _host_section(value: Any, label: str) -> dict[str, Any]:
    if isinstance(value, HostOptions):
        return dict(attrs.asdict(value))
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if v is not None}
    raise fail(label, "host", f"expected a table, got {type(value).__name__}")


def record_origins(origins: dict[str, str], key: str, section: Any, label: str) -> None:
    """Record ``label`` as the origin of ``key`` and of every field and option it sets."""
    origins[key] = label
    if isinstance(section, Mapping):
        for field, value in section.items():
            origins[f"{key}.{field}"] = label
            if field == "options" and isinstance(value, Mapping):
                for option in value:
                    origins[f"{key}.options.{option}"] = label
