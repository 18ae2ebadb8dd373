"""PostgreSQL persistence, queue and lock for WFE."""

from __future__ import annotations
