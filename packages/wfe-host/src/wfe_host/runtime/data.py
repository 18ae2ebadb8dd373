"""Restoring workflow data to a definition's data type."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.serialization import from_primitive

if TYPE_CHECKING:
    from wfe_core.models import WorkflowDefinition


def is_structured_type(data_type: type) -> bool:
    """Whether ``data_type`` is an attrs class or dataclass (restored from stored dicts)."""
    known = _STRUCTURED.get(data_type)
    if known is None:
        known = attrs.has(data_type) or dataclasses.is_dataclass(data_type)
        with contextlib.suppress(TypeError):  # not hashable: asked again next time
            _STRUCTURED[data_type] = known
    return known


#: The answers of :func:`is_structured_type` by type (asked on every pass and restore, of
#: the few data types the definitions declare).
_STRUCTURED: dict[type, bool] = {}


def restore(data: Any, definition: WorkflowDefinition | None) -> Any:
    """``data`` as the definition's data type (stored data comes back as dicts); stored data
    that does not fit the type stays as it was stored, so it can still be shown, and a pass
    fails the workflow with :func:`restore_error`."""
    try:
        return _restored(data, definition)
    except Exception:  # cattrs raises many kinds; restore_error tells which
        return data


def restore_error(data: Any, definition: WorkflowDefinition | None) -> Exception | None:
    """Why ``data``, as :func:`restore` left it, is not the definition's data type; ``None``
    when it is (the cheap check comes first: this runs on every pass)."""
    if definition is None or not is_structured_type(definition.data_type):
        return None
    if not isinstance(data, Mapping):
        return None
    try:
        _restored(data, definition)
    except Exception as exc:
        return exc
    return None


def _restored(data: Any, definition: WorkflowDefinition | None) -> Any:
    if definition is None or data is None:
        return data
    data_type = definition.data_type
    if is_structured_type(data_type) and isinstance(data, Mapping):
        return from_primitive(data, data_type)
    return data


def initial_data(data: Any, definition: WorkflowDefinition) -> Any:
    """The data a new instance starts with: ``data`` (a mapping is structured into an attrs
    or dataclass data type), or a default instance of the data type."""
    data_type = definition.data_type
    if data is None:
        if data_type is dict or not is_structured_type(data_type):
            return {}
        try:
            return data_type()
        except TypeError:
            return None
    if is_structured_type(data_type) and isinstance(data, Mapping):
        return from_primitive(dict(data), data_type)
    return data
