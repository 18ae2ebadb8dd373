"""The built-in step types: ``shell``, ``deno`` and ``workflow``."""

from __future__ import annotations
