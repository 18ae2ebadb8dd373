"""Merging settings layers field by field, highest priority last."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wfe_host.settings._layers import SettingsLayer, scheme_of
from wfe_host.settings._models import CONCERNS

#: ``(concern, url)`` → the name of the provider the URL's scheme selects for that concern
#: (``None`` when unknown).
ProviderOfUrl = Callable[[str, str], str | None]


def _identity(
    concern: str, section: Mapping[str, Any], provider_of_url: ProviderOfUrl | None
) -> str | None:
    provider = section.get("provider")
    if isinstance(provider, str):
        return provider
    url = section.get("url")
    if isinstance(url, str):
        found = provider_of_url(concern, url) if provider_of_url is not None else None
        return found or scheme_of(url)
    return None


def merge_layers(
    layers: Sequence[SettingsLayer], provider_of_url: ProviderOfUrl | None = None
) -> SettingsLayer:
    """One layer from ``layers`` (lowest priority first), merged field by field.

    Options merge key by key. When a higher layer selects a different provider for a concern
    than a lower one (by name, or by a URL whose scheme means another provider), the lower
    layer's values for that concern are dropped.
    """
    merged = SettingsLayer("merged")
    for layer in layers:
        for key, value in layer.data.items():
            below = merged.data.get(key)
            if key in CONCERNS and isinstance(below, dict) and isinstance(value, dict):
                high = _identity(key, value, provider_of_url)
                low = _identity(key, below, provider_of_url)
                if high is not None and low is not None and high != low:
                    _drop(merged, key)
                    below = None
            if isinstance(below, dict) and isinstance(value, dict):
                merged.data[key] = _merge_section(below, value)
            else:
                _drop(merged, key)
                merged.data[key] = value
        merged.origins.update(layer.origins)
    return merged


def _merge_section(below: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    combined = dict(below)
    for field, field_value in value.items():
        lower = combined.get(field)
        if field == "options" and isinstance(lower, dict) and isinstance(field_value, Mapping):
            field_value = {**lower, **field_value}
        combined[field] = field_value
    return combined


def _drop(layer: SettingsLayer, key: str) -> None:
    layer.data.pop(key, None)
    for path in [p for p in layer.origins if p == key or p.startswith(f"{key}.")]:
        del layer.origins[path]
