"""Reading and writing workflow data, and calling the mapping callables of a definition."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


@functools.lru_cache(maxsize=4096)
def _positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` requires (2 for ``*args``); 1 when unknown.

    Parameters with defaults do not count, so the closure idiom ``lambda data, n=n: ...``
    still takes only the data.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return 2
        if (
            parameter.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and parameter.default is inspect.Parameter.empty
        ):
            count += 1
    return count


def positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` requires (cached; 1 when it cannot be told)."""
    try:
        return _positional_arity(fn)
    except TypeError:  # unhashable callable
        return _positional_arity.__wrapped__(fn)


def call_flexible(fn: Any, first: Any, second: Any) -> Any:
    """``fn(first)`` or ``fn(first, second)`` by what ``fn`` accepts; a non-callable ``fn``
    is a constant and comes back as it is."""
    if not callable(fn):
        return fn
    if positional_arity(fn) >= 2:
        return fn(first, second)
    if positional_arity(fn) == 0:
        return fn()
    return fn(first)


def get_field(data: Any, name: str) -> Any:
    """``data[name]`` for mappings, else ``getattr(data, name)``."""
    if isinstance(data, Mapping):
        return data[name]
    return getattr(data, name)


def set_field(data: Any, name: str, value: Any) -> None:
    """``data[name] = value`` for mappings, else ``setattr(data, name, value)``."""
    if isinstance(data, MutableMapping):
        data[name] = value
    else:
        setattr(data, name, value)


def merge_into(data: Any, values: Mapping[str, Any]) -> None:
    """Set every key of ``values`` on ``data``."""
    for name, value in values.items():
        set_field(data, name, value)
