"""An example third-party WFE plugin: the ``jsonl`` lifecycle publisher."""

from __future__ import annotations

__all__: list[str] = []
