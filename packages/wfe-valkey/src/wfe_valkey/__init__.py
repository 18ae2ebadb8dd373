"""Valkey/Redis distributed lock, queue and lifecycle events for WFE.

``ValkeyLock``, ``ValkeyQueue`` and ``ValkeyLifecycle`` take a URL (``valkey://host:6379/0``,
also ``valkeys://``, ``redis://``, ``rediss://``) and :class:`ValkeyOptions`. They are
imported on first access, so importing this package (as the plugin does) does not load the
valkey client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wfe_valkey.options import DEFAULT_URL, SCHEMES, ValkeyOptions, parse_url

if TYPE_CHECKING:
    from wfe_valkey.lifecycle import ValkeyLifecycle
    from wfe_valkey.lock import ValkeyLock
    from wfe_valkey.queue import ValkeyQueue

__all__ = [
    "DEFAULT_URL",
    "SCHEMES",
    "ValkeyLifecycle",
    "ValkeyLock",
    "ValkeyOptions",
    "ValkeyQueue",
    "parse_url",
]

_LAZY = {
    "ValkeyLifecycle": "wfe_valkey.lifecycle",
    "ValkeyLock": "wfe_valkey.lock",
    "ValkeyQueue": "wfe_valkey.queue",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wfe_valkey' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
