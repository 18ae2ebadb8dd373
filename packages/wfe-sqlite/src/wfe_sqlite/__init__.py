"""SQLite persistence, queue and lock for WFE (the embedded default)."""

from __future__ import annotations
