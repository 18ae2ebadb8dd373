"""YAML workflows for WFE: loader, validation, shell and Deno steps."""

from __future__ import annotations
