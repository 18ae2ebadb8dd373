"""An instance kept as a store gives it back, without the JSON text a database holds."""

from __future__ import annotations

import json
import operator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.memory._values import (
    NOT_PLAIN,
    copy_pointer,
    fresh,
    head_document,
    plain_copy,
    snapshot_pointer,
    utc,
)
from wfe_core.models import WorkflowInstance, WorkflowStatus
from wfe_core.serialization import from_primitive

if TYPE_CHECKING:
    from collections.abc import Sequence


class InstanceSnapshot:
    """``instance`` as reading it back from its JSON text would give it (fresh objects,
    dict keys as strings, tuples as lists, datetimes in UTC), kept the way the in-memory
    store keeps its rows: plain data, without the text.

    For handing a stored instance to code of the same process that would otherwise read it
    back (a host's ``wait_for_workflow`` callers, when the host finished the workflow): a
    snapshot and a copy of it cost a fraction of encoding the instance as JSON text and
    decoding it again. Raises ``TypeError`` or ``ValueError`` for a value JSON cannot hold,
    as encoding it would.
    """

    __slots__ = ("_head", "_pointers", "_values")

    def __init__(self, instance: WorkflowInstance) -> None:
        #: The head's fields (all but the pointers) when each holds what JSON gives back
        #: unchanged (see _plain_head); else ``None``, and the head as its JSON document.
        self._values = _plain_head(instance)
        self._head: dict[str, Any] | None = None
        if self._values is None:
            head = head_document(instance)
            head["revision"] = instance.revision
            self._head = head
        self._pointers: Sequence[tuple[Any, ...]] = [
            snapshot_pointer(pointer) for pointer in instance.pointers
        ]

    def instance(self) -> WorkflowInstance:
        """A new instance from the snapshot, sharing nothing mutable with it (each call
        gives another)."""
        pointers = list(map(copy_pointer, self._pointers))
        if self._values is not None:
            values = list(self._values)
            values[_DATA_AT] = fresh(values[_DATA_AT])
            values.insert(_POINTERS_AT, pointers)
            return WorkflowInstance(*values)
        instance = from_primitive(fresh(self._head), WorkflowInstance)
        instance.pointers.extend(pointers)
        return instance


#: What each head field may hold to be kept as it is, without its JSON document: exact
#: types (a subclass, a tuple, a trace context: the document's way), ``_PLAIN`` for plain
#: JSON data (copied), ``_TIME`` for a datetime (kept in UTC) or ``None`` too.
_PLAIN = "plain"
_TIME = "time"
_OPTIONAL_TIME = "optional time"
_STR: frozenset[type] = frozenset({str})
_OPTIONAL_STR: frozenset[type] = frozenset({str, type(None)})
_HEAD_RULES: dict[str, frozenset[type] | str] = {
    "definition_id": _STR,
    "version": frozenset({int}),
    "id": _STR,
    "status": frozenset({WorkflowStatus}),
    "data": _PLAIN,
    "reference": _OPTIONAL_STR,
    "description": _OPTIONAL_STR,
    "next_execution": _OPTIONAL_TIME,
    "create_time": _TIME,
    "complete_time": _OPTIONAL_TIME,
    "revision": frozenset({int}),
    "parent_workflow_id": _OPTIONAL_STR,
    "parent_pointer_id": _OPTIONAL_STR,
    "trace_context": frozenset({type(None)}),
}
_FIELDS = [field.name for field in attrs.fields(WorkflowInstance)]
# A field added to the instance needs its rule here.
assert sorted(_HEAD_RULES) == sorted(name for name in _FIELDS if name != "pointers")
_POINTERS_AT = _FIELDS.index("pointers")
_HEAD_NAMES = [name for name in _FIELDS if name != "pointers"]
_DATA_AT = _HEAD_NAMES.index("data")
#: Every head field, in the class's order, in one C-level call.
_head_state = operator.attrgetter(*_HEAD_NAMES)
_RULES = [_HEAD_RULES[name] for name in _HEAD_NAMES]


def _plain_head(instance: WorkflowInstance) -> tuple[Any, ...] | None:
    """The instance's fields but its pointers, in their order, as its JSON document reads
    back (times in UTC, the data a copy), when each holds what JSON gives back unchanged;
    ``None`` otherwise. Instead of the document: encoding the head and structuring it again
    costs a finished workflow's waiter several times as much."""
    values = list(_head_state(instance))
    for index, rule in enumerate(_RULES):
        value = values[index]
        if type(rule) is frozenset:
            if type(value) not in rule:
                return None
        elif rule is _PLAIN:
            value = values[index] = plain_copy(value)
            if value is NOT_PLAIN:
                return None
        elif value is None and rule is _OPTIONAL_TIME:
            continue
        elif type(value) is datetime:
            if value.tzinfo is not UTC:
                values[index] = utc(value)
        else:
            return None
    return tuple(values)


def json_copy(value: Any) -> Any:
    """``value`` (primitives, as ``to_primitive`` gives them) as reading back its JSON text
    would give it: a copy made without the text when it is plain JSON data already (dicts
    with ``str`` keys, lists, scalars), else through the text. Raises ``TypeError`` or
    ``ValueError`` for a value JSON cannot hold, as encoding it would."""
    copied = plain_copy(value)
    if copied is NOT_PLAIN:
        return json.loads(json.dumps(value))
    return copied
