"""The one cattrs converter every model goes through.

It unstructures to JSON-compatible values (datetimes, dates and times as ISO 8601 strings,
enums as their values, ``Decimal`` and ``UUID`` as strings, ``timedelta`` as seconds, sets and
tuples as lists), so every provider stores exactly what the in-memory provider keeps and each
of these comes back equal. Workflow data of any attrs class or dataclass unstructures by its
runtime type; it structures back as plain dicts and lists until the host restores the
definition's data type. :func:`storage_problems` says, before anything is stored, which field
of a data type could not make that round trip.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
import uuid
from collections import abc
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, TypeVar

import attrs
from cattrs.preconf.json import make_converter

from wfe_core.models._trace import TraceContext

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


# Exact round trips: Decimal as its text (never a float), timedelta as seconds (a float holds
# every microsecond exactly for spans up to about 270 years).
converter.register_unstructure_hook(Decimal, str)
converter.register_structure_hook(Decimal, lambda value, _: Decimal(str(value)))
converter.register_unstructure_hook(uuid.UUID, str)
converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(str(value)))
converter.register_unstructure_hook(timedelta, timedelta.total_seconds)
converter.register_structure_hook(timedelta, lambda value, _: timedelta(seconds=float(value)))
converter.register_unstructure_hook(time, time.isoformat)
converter.register_structure_hook(
    time, lambda value, _: value if isinstance(value, time) else time.fromisoformat(value)
)


def _structure_trace_context(value: Any, _: type) -> TraceContext:
    if isinstance(value, TraceContext):
        return value
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"a trace context is an object of strings, not {value!r}")
    return TraceContext(tuple(value.items()))


# A trace context is stored as the carrier a propagator reads: {"traceparent": "00-..."}.
converter.register_unstructure_hook(TraceContext, lambda context: dict(context.fields))
converter.register_structure_hook(TraceContext, _structure_trace_context)

#: Types whose values the converter stores and gives back equal.
STORABLE_SCALARS: frozenset[Any] = frozenset(
    {str, int, float, bool, type(None), Decimal, uuid.UUID, datetime, date, time, timedelta}
)
_COLLECTIONS = {
    list, set, frozenset, tuple, dict,
    abc.Sequence, abc.MutableSequence, abc.Set, abc.MutableSet, abc.Mapping, abc.MutableMapping,
}  # fmt: skip


#: What :func:`storage_problems` accepts, for error messages.
STORABLE = (
    "str, int, float, bool, Decimal, UUID, datetime, date, time, timedelta, enums, Any, "
    "attrs classes and dataclasses, and lists, tuples, sets and dicts of them"
)


def storage_problems(cls: Any, path: str = "") -> list[str]:
    """Why values of type ``cls`` could not be stored and given back equal: one line per
    field that cannot, naming its path (``order.lines[].price``). Empty when they can.

    Supported (:data:`STORABLE`): the scalars of :data:`STORABLE_SCALARS`, enums, ``Any``,
    attrs classes and dataclasses of supported fields, and lists, tuples, sets, frozensets and
    dicts (string, integer or enum keys) of supported values, optional or in unions.
    """
    problems: list[str] = []
    _check(cls, path or getattr(cls, "__name__", str(cls)), problems, set())
    return problems


def _check(tp: Any, path: str, problems: list[str], seen: set[Any]) -> None:
    if tp is Any or tp in STORABLE_SCALARS:
        return
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        _check(typing.get_args(tp)[0], path, problems, seen)
    elif origin is typing.Literal:
        return
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            _check(arg, path, problems, seen)
    elif origin in _COLLECTIONS or tp in _COLLECTIONS:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin in (dict, abc.Mapping, abc.MutableMapping) and args:
            key, value = args
            if key not in (str, int, Any) and not (isinstance(key, type) and issubclass(key, Enum)):
                problems.append(f"{path}: dict keys must be strings or integers, not {_name(key)}")
            _check(value, f"{path}[]", problems, seen)
        else:
            for arg in args:
                _check(arg, f"{path}[]", problems, seen)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        return
    elif isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp)):
        if tp in seen:
            return
        seen.add(tp)
        try:
            hints = typing.get_type_hints(tp)
        except Exception as exc:  # a forward reference that names nothing importable
            problems.append(f"{path}: its annotations cannot be resolved ({exc})")
            return
        cls: Any = tp
        fields = attrs.fields(cls) if attrs.has(cls) else dataclasses.fields(cls)
        for name in (f.name for f in fields):
            _check(hints.get(name, Any), f"{path}.{name}", problems, seen)
    elif tp is object:
        problems.append(f"{path}: annotated `object`, which cannot be restored; use typing.Any")
    else:
        problems.append(f"{path}: {_name(tp)} cannot be stored")


def _name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or str(tp)


def to_primitive(value: Any) -> Any:
    """``value`` as JSON-compatible builtins (dicts, lists, str, int, float, bool, None)."""
    return converter.unstructure(value)


def from_primitive(value: Any, cls: type[T]) -> T:
    """Structure JSON-compatible ``value`` into ``cls``; errors carry the field path."""
    return converter.structure(value, cls)
