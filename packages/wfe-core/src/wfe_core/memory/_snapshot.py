"""An instance kept as a store gives it back, without the JSON text a database holds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from wfe_core.memory._values import (
    NOT_PLAIN,
    copy_pointer,
    fresh,
    head_document,
    plain_copy,
    snapshot_pointer,
)
from wfe_core.models import WorkflowInstance
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

    __slots__ = ("_head", "_pointers")

    def __init__(self, instance: WorkflowInstance) -> None:
        head = head_document(instance)
        head["revision"] = instance.revision
        self._head: dict[str, Any] = head
        self._pointers: Sequence[tuple[Any, ...]] = [
            snapshot_pointer(pointer) for pointer in instance.pointers
        ]

    def instance(self) -> WorkflowInstance:
        """A new instance from the snapshot, sharing nothing mutable with it (each call
        gives another)."""
        instance = from_primitive(fresh(self._head), WorkflowInstance)
        instance.pointers.extend(map(copy_pointer, self._pointers))
        return instance


def json_copy(value: Any) -> Any:
    """``value`` (primitives, as ``to_primitive`` gives them) as reading back its JSON text
    would give it: a copy made without the text when it is plain JSON data already (dicts
    with ``str`` keys, lists, scalars), else through the text. Raises ``TypeError`` or
    ``ValueError`` for a value JSON cannot hold, as encoding it would."""
    copied = plain_copy(value)
    if copied is NOT_PLAIN:
        return json.loads(json.dumps(value))
    return copied
