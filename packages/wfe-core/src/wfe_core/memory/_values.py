"""Stored values of the in-memory store: copies that read back as their JSON text would.

A database provider stores an instance as JSON text, so what it reads back is JSON's view of
what was written: fresh objects, dict keys as strings, tuples as lists, datetimes in UTC, and a
value JSON cannot hold refuses the write. The in-memory store keeps the same view without the
text: a value made only of what JSON gives back unchanged (``dict`` with ``str`` keys,
``list``, ``str``, ``int``, ``float``, ``bool``, ``None``) is kept as a copy, and anything else
goes through JSON text once (:func:`via_json`), which normalizes it or raises. Copying is
several times cheaper than encoding, and a write happens after every step.
"""

from __future__ import annotations

import json
import operator
import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

import attrs

from wfe_core.models import ExecutionPointer, WorkflowInstance
from wfe_core.serialization import from_primitive, to_primitive

__all__ = [
    "NOT_PLAIN",
    "copy_pointer",
    "dumps",
    "head_document",
    "plain_copy",
    "plain_equal",
    "pointer_state",
    "snapshot_pointer",
    "utc",
    "via_json",
]

T = TypeVar("T")

#: Unicode kept as it is (the text never leaves the store); one encoder, not one per call.
dumps = json.JSONEncoder(ensure_ascii=False).encode


class _NotPlain:
    def __repr__(self) -> str:
        return "NOT_PLAIN"


#: Returned for a value that is not plain JSON data (it must go through :func:`via_json`).
NOT_PLAIN: Any = _NotPlain()


def plain_copy(value: Any) -> Any:
    """A fresh copy of ``value`` when it is plain JSON data, else :data:`NOT_PLAIN`."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                return NOT_PLAIN
            item = plain_copy(item)
            if item is NOT_PLAIN:
                return NOT_PLAIN
            copied[key] = item
        return copied
    if kind is list:
        items = [plain_copy(item) for item in value]
        return NOT_PLAIN if any(item is NOT_PLAIN for item in items) else items
    return NOT_PLAIN


def plain_equal(value: Any, kept: Any) -> bool:
    """Whether ``value`` is plain JSON data equal to ``kept`` with every type the same (so
    ``True`` differs from ``1``, and a tuple from a list: they would be stored differently)."""
    kind = type(value)
    if kind is not type(kept):
        return False
    if kind is dict:
        # A loop, not all() over a generator: a write compares the workflow data every step.
        if len(value) != len(kept):
            return False
        for key, item in value.items():
            # The kept data is plain, so NOT_PLAIN marks a key it lacks.
            other = kept.get(key, NOT_PLAIN)
            if type(key) is not str or other is NOT_PLAIN or not plain_equal(item, other):
                return False
        return True
    if kind is list:
        return len(value) == len(kept) and all(map(plain_equal, value, kept))
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return bool(value == kept)
    return False


def fresh(value: Any) -> Any:
    """A copy of plain JSON data (only its dicts and lists are copied)."""
    if type(value) is dict:
        return {key: fresh(item) for key, item in value.items()}
    if type(value) is list:
        return [fresh(item) for item in value]
    return value


def via_json(value: Any, cls: type[T]) -> T:
    """``value`` as it reads back from JSON text (raises when JSON cannot hold it)."""
    return from_primitive(json.loads(dumps(to_primitive(value))), cls)


def head_document(instance: WorkflowInstance) -> dict[str, Any]:
    """The instance without its pointers and revision, as plain JSON data of its own (as it
    reads back from the instance's JSON text)."""
    pointers = instance.pointers
    # Without copying the instance: nothing awaits in between.
    instance.pointers = []
    try:
        head = to_primitive(instance)
    finally:
        instance.pointers = pointers
    del head["pointers"]
    # The row keeps the revision (a write changes only it when the head is the same).
    del head["revision"]
    # The converter built the head afresh of plain values, but for the data it may pass on.
    data = plain_copy(head["data"])
    if data is NOT_PLAIN:
        return json.loads(dumps(head))  # type: ignore[no-any-return]
    head["data"] = data
    return head  # type: ignore[no-any-return]


def utc(value: datetime) -> datetime:
    """``value`` as it is read back: naive taken as UTC, aware converted to UTC (the rule of
    :func:`wfe_core.serialization._structure_datetime`)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- pointers ---------------------------------------------------------------------------------
#: Every field of a pointer, in one C-level call.
pointer_state = operator.attrgetter(*(field.name for field in attrs.fields(ExecutionPointer)))

#: Per field: the exact types a value may have to be kept as it is (plain scalars), or the
#: function that gives the value as it reads back, NOT_PLAIN when it must go through JSON.
_Rule = frozenset[type] | typing.Callable[[Any], Any]


def _datetime(value: Any) -> Any:
    if type(value) is not datetime:
        return NOT_PLAIN
    return value if value.tzinfo is UTC else utc(value)


def _str_list(value: Any) -> Any:
    if type(value) is not list:
        return NOT_PLAIN
    if not value or all(type(item) is str for item in value):
        return list(value)
    return NOT_PLAIN


def _rule_for(hint: Any) -> _Rule:
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(args) == 1
        if not optional:
            raise TypeError(f"the in-memory store cannot keep a pointer field of type {hint!r}")
        hint = args[0]
    if hint in (str, int, bool) or (isinstance(hint, type) and issubclass(hint, Enum)):
        return frozenset({hint, type(None)} if optional else {hint})
    if hint is datetime and optional:
        return _datetime
    if hint is Any or (typing.get_origin(hint) is dict and typing.get_args(hint) == (str, Any)):
        return plain_copy
    if typing.get_origin(hint) is list and typing.get_args(hint) == (str,):
        return _str_list
    raise TypeError(f"the in-memory store cannot keep a pointer field of type {hint!r}")


_HINTS = typing.get_type_hints(ExecutionPointer)
# The rules line up with pointer_state's fields.
assert list(_HINTS) == [field.name for field in attrs.fields(ExecutionPointer)]
_RULES = [_rule_for(hint) for hint in _HINTS.values()]
#: Positions of the fields that may hold dicts or lists (copied again on every read).
_CONTAINERS = tuple(
    index for index, rule in enumerate(_RULES) if rule is plain_copy or rule is _str_list
)
#: Those of them that hold a list of ``str`` only (``children``, ``scope``): copied as lists,
#: without a call per item (a loop's container holds an id per round).
_STR_LISTS = frozenset(index for index, rule in enumerate(_RULES) if rule is _str_list)

#: What a snapshot does for one combination of the fields' types: the positions of the
#: datetimes to see in UTC, and of the dicts and lists to copy with their rule.
_Plan = tuple[tuple[int, ...], tuple[tuple[int, typing.Callable[[Any], Any]], ...]]
#: Types an ``Any`` field keeps as they are.
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
#: The plan of each combination of field types seen so far. Only combinations of the few
#: types the rules accept are kept, so it stays small (a workflow's pointers use a handful).
_PLANS: dict[tuple[type, ...], _Plan] = {}


def _plan(kinds: tuple[type, ...]) -> _Plan | None:
    """The plan for a pointer whose fields have the types ``kinds``; ``None`` when one of
    them is not kept as plain data (the pointer must go through JSON)."""
    datetimes: list[int] = []
    containers: list[tuple[int, typing.Callable[[Any], Any]]] = []
    for index, (kind, rule) in enumerate(zip(kinds, _RULES, strict=True)):
        if isinstance(rule, frozenset):
            if kind not in rule:
                return None
        elif kind is type(None):
            continue
        elif rule is _datetime:
            if kind is not datetime:
                return None
            datetimes.append(index)
        elif rule is plain_copy and kind in _IMMUTABLE:
            continue
        elif kind is list or (kind is dict and rule is plain_copy):
            containers.append((index, rule))
        else:
            return None
    plan = _PLANS[kinds] = (tuple(datetimes), tuple(containers))
    return plan


def snapshot_pointer(pointer: ExecutionPointer) -> tuple[Any, ...]:
    """The pointer's fields as a database would give them back: kept (and compared with later
    states of the pointer) instead of its JSON text."""
    values = pointer_state(pointer)
    # One look-up by the fields' types checks every scalar and skips the fields that are
    # None, instead of a test per field: a write snapshots a pointer or two per step.
    kinds = tuple(map(type, values))
    plan = _PLANS.get(kinds)
    if plan is None:
        plan = _plan(kinds)
    if plan is not None:
        datetimes, containers = plan
        if not datetimes and not containers:
            return values  # only immutable scalars: nothing to copy
        kept = list(values)
        for index in datetimes:  # the rule of _datetime, inline
            value = values[index]
            if value.tzinfo is not UTC:
                kept[index] = utc(value)
        for index, convert in containers:
            value = values[index]
            if not value:
                kept[index] = value.copy()  # empty: nothing to check
            else:
                value = kept[index] = convert(value)
                if value is NOT_PLAIN:
                    break
        else:
            return tuple(kept)
    return pointer_state(via_json(pointer, ExecutionPointer))


def copy_pointer(state: tuple[Any, ...]) -> ExecutionPointer:
    """A new pointer from a snapshot, sharing nothing mutable with it."""
    values = list(state)
    for index in _CONTAINERS:
        value = values[index]
        if type(value) is list and index in _STR_LISTS:
            values[index] = value[:]
        elif type(value) is dict or type(value) is list:
            values[index] = fresh(value)
    return ExecutionPointer(*values)
