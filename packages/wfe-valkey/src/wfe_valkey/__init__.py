"""Valkey/Redis distributed lock, queue and lifecycle events for WFE."""

from __future__ import annotations
