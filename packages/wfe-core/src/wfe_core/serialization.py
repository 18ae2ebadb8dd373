"""The one cattrs converter every model goes through.

It unstructures to JSON-compatible values (datetimes as ISO 8601 strings, enums as their
values), so every provider stores exactly what the in-memory provider keeps. Workflow data of
any attrs class or dataclass unstructures by its runtime type; it structures back as plain
dicts and lists until the host restores the definition's data type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, TypeVar

from cattrs.preconf.json import make_converter

T = TypeVar("T")

converter = make_converter()


def _structure_datetime(value: Any, _: type) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    # Naive times are taken as UTC, and aware ones are converted to it, so every provider
    # gives back the same aware UTC datetimes.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


converter.register_structure_hook(datetime, _structure_datetime)
# Plain values, not enum members, so what is stored is the same builtins in every provider.
# (StrEnum is registered on its own: its MRO puts ``str``, whose hook is identity, before Enum.)
# (``_value_`` is what ``.value`` returns, read without the property: several per write.)
for _enum_base in (Enum, StrEnum):
    converter.register_unstructure_hook(_enum_base, lambda member: member._value_)


def to_primitive(value: Any) -> Any:
    """``value`` as JSON-compatible builtins (dicts, lists, str, int, float, bool, None)."""
    return converter.unstructure(value)


def from_primitive(value: Any, cls: type[T]) -> T:
    """Structure JSON-compatible ``value`` into ``cls``; errors carry the field path."""
    return converter.structure(value, cls)
