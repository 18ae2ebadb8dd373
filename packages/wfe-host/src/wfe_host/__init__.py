"""The WFE workflow host: runtime, plugin discovery, settings by name and the `wfe` command line."""

from __future__ import annotations
