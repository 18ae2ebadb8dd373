"""The JSON text of a pointer row and of workflow data, without the converter for common shapes.

A pointer row is the pointer's JSON data without ``children`` (they are rows of their own)
and without the fields that hold their default (``"error":null``, ``"extensions":{}``...):
structuring fills those back in, so a row reads back as the same pointer, and a finished
step's row is about half the text (494 characters for a plain step's, about 230 without them:
fewer pages of the pointer table written per step, and fewer splits of its pages).

The converter's generated hook calls a hook per field (the optional datetimes, the enum, the
``Any`` fields through a look-up by runtime type), which is most of what encoding a pointer
costs. :func:`pointer_row` reads the fields itself when each holds a value whose encoding is
known (exact builtins, ``PointerStatus``, ``datetime``, and dicts and lists of builtins) and
gives then exactly the text the converter's data gives (:func:`converter_row`, which it uses
for any other value; the tests compare the two on generated pointers).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import attrs

from wfe_core.models import ExecutionPointer, PointerStatus
from wfe_core.serialization import converter, to_primitive
from wfe_sqlite._dumps import dumps

#: A string's JSON text, as ``dumps`` writes it (unicode kept as it is).
_string = json.encoder.encode_basestring

__all__ = ["compact", "converter_row", "data_text", "fast_text", "is_plain", "pointer_row"]

_SCALARS = frozenset({str, int, float, bool, type(None)})


def is_plain(value: Any) -> bool:
    """Whether ``value`` is JSON builtins only (exact ``str``, ``int``, ``float``, ``bool``,
    ``None``, and ``dict`` with ``str`` keys and ``list`` of such): the converter gives such
    a value back equal, so its text is ``dumps(value)`` itself."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        # A loop, not all() over a generator: it costs less than making the generator for
        # the few items these dicts hold.
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not is_plain(item):
                return False
        return True
    if kind is list:
        return all(map(is_plain, value))
    return False


def data_text(data: Any) -> str:
    """The JSON text of workflow ``data``, as ``dumps(to_primitive(data))`` writes it."""
    return dumps(data) if is_plain(data) else dumps(to_primitive(data))


def _stored_default(field: attrs.Attribute[Any]) -> tuple[bool, Any]:
    default: Any = field.default
    if default is attrs.NOTHING:
        return False, None
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        factory: Any = default
        if factory.takes_self:  # pragma: no cover - the model has none
            return False, None
        value = factory.factory()
        # A factory of a fresh value (``new_id``) has no default to leave out.
        if value != factory.factory():
            return False, None
        return True, to_primitive(value)
    return True, to_primitive(default)


#: Each field of a pointer row that may be left out, with its default as the converter
#: writes it. ``children`` is not in a row.
_DEFAULTS: dict[str, Any] = {}
for _field in attrs.fields(ExecutionPointer):
    _has, _value = _stored_default(_field)
    if _has and _field.name != "children":
        _DEFAULTS[_field.name] = _value
if "id" in _DEFAULTS or "step_id" in _DEFAULTS:  # pragma: no cover - a model change to follow
    raise RuntimeError("wfe_sqlite._rows: ExecutionPointer's id fields gained defaults")


def compact(primitive: dict[str, Any]) -> dict[str, Any]:
    """``primitive`` (a pointer's JSON data) without the fields holding their default: of
    the same type and equal (``0`` is not ``False``), so what is left out reads back as what
    was there."""
    for name, default in _DEFAULTS.items():
        if name in primitive:
            value = primitive[name]
            if type(value) is type(default) and value == default:
                del primitive[name]
    return primitive


# The converter's own hook, called without looking it up for each pointer.
_unstructure_pointer = converter.get_unstructure_hook(ExecutionPointer)


def converter_row(pointer: ExecutionPointer) -> tuple[str, list[str]]:
    """The pointer row's text through the converter, and the pointer's child ids: what
    :func:`pointer_row` gives (its oracle, and its way for uncommon values)."""
    primitive: dict[str, Any] = _unstructure_pointer(pointer)
    children: list[str] = primitive.pop("children")
    return dumps(compact(primitive)), children


_PENDING = PointerStatus.PENDING


def _as_is(value: Any) -> str:
    """The JSON text of a field the converter's hook passes as it is (``step_id``, ``id``,
    ``active``, ``event_published``, ``attempt``): what ``dumps`` writes for it."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return "true" if value else "false"
    return dumps(value)


def fast_text(pointer: ExecutionPointer) -> str | None:
    """The row's text made from the fields, or ``None`` when a field holds a value whose
    encoding is not known here: ``dumps(compact(primitive))`` of the converter's data, each
    field's text joined as the encoder joins them (in the fields' order, the defaults left
    out), without building the row's dict for the encoder first. ``step_id``, ``id``,
    ``active``, ``event_published`` and ``attempt`` are passed as they are, as the
    converter's hook does.

    Each field is looked at in a line of its own (no loop over tuples of names and values
    made for each call): this runs for every pointer row written, two or three a step."""
    value: Any = pointer.step_id
    parts = ['{"step_id":', int.__repr__(value) if type(value) is int else _as_is(value)]
    value = pointer.id
    parts.append(',"id":')
    parts.append(_string(value) if type(value) is str else _as_is(value))
    value = pointer.step_name
    if value is not None:
        if type(value) is not str:
            return None
        parts.append(',"step_name":')
        parts.append(_string(value))
    value = pointer.status
    if type(value) is not PointerStatus:
        return None
    if value is not _PENDING:
        parts.append(',"status":')
        parts.append(_string(value._value_))
    value = pointer.active
    if value is not True:
        parts.append(',"active":')
        parts.append(_as_is(value))
    # A datetime's ISO text holds nothing JSON escapes: quoted as it is.
    value = pointer.start_time
    if value is not None:
        if type(value) is not datetime:
            return None
        parts.append(',"start_time":"')
        parts.append(value.isoformat())
        parts.append('"')
    value = pointer.end_time
    if value is not None:
        if type(value) is not datetime:
            return None
        parts.append(',"end_time":"')
        parts.append(value.isoformat())
        parts.append('"')
    value = pointer.sleep_until
    if value is not None:
        if type(value) is not datetime:
            return None
        parts.append(',"sleep_until":"')
        parts.append(value.isoformat())
        parts.append('"')
    value = pointer.persistence_data
    if value is not None:
        if not is_plain(value):
            return None
        parts.append(',"persistence_data":')
        parts.append(dumps(value))
    value = pointer.event_name
    if value is not None:
        if type(value) is not str:
            return None
        parts.append(',"event_name":')
        parts.append(_string(value))
    value = pointer.event_key
    if value is not None:
        if type(value) is not str:
            return None
        parts.append(',"event_key":')
        parts.append(_string(value))
    value = pointer.event_effective_date
    if value is not None:
        if type(value) is not datetime:
            return None
        parts.append(',"event_effective_date":"')
        parts.append(value.isoformat())
        parts.append('"')
    value = pointer.event_published
    if value is not False:
        parts.append(',"event_published":')
        parts.append(_as_is(value))
    value = pointer.event_data
    if value is not None:
        if not is_plain(value):
            return None
        parts.append(',"event_data":')
        parts.append(dumps(value))
    value = pointer.outcome
    if value is not None:
        if not is_plain(value):
            return None
        parts.append(',"outcome":')
        parts.append(dumps(value))
    value = pointer.attempt
    if type(value) is not int or value != 0:
        parts.append(',"attempt":')
        parts.append(int.__repr__(value) if type(value) is int else _as_is(value))
    value = pointer.predecessor_id
    if value is not None:
        if type(value) is not str:
            return None
        parts.append(',"predecessor_id":')
        parts.append(_string(value))
    value = pointer.context_item
    if value is not None:
        if not is_plain(value):
            return None
        parts.append(',"context_item":')
        parts.append(dumps(value))
    value = pointer.scope
    if type(value) is not list:
        return None
    if value:
        # As it is: the converter's hook for a list of ``str`` copies it as it is.
        parts.append(',"scope":')
        parts.append(dumps(value))
    value = pointer.error
    if value is not None:
        if type(value) is not str:
            return None
        parts.append(',"error":')
        parts.append(_string(value))
    value = pointer.extensions
    if type(value) is not dict:
        return None
    if value:
        if not is_plain(value):
            return None
        parts.append(',"extensions":')
        parts.append(dumps(value))
    parts.append("}")
    return "".join(parts)


def pointer_row(pointer: ExecutionPointer) -> tuple[str, list[str]]:
    """The text of ``pointer``'s row (its JSON data without ``children`` and without the
    fields at their default) and its child ids, as :func:`converter_row` gives them.

    The child ids are the pointer's own list, not a copy (a loop's holds an id per round:
    copying it would make each round dearer than the one before): read them before the
    pointer changes."""
    children = pointer.children
    text = fast_text(pointer) if type(children) is list else None
    if text is None:
        return converter_row(pointer)
    return text, children
