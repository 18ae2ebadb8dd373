"""Array parameters as PostgreSQL array literals (internal).

The rows of a write travel as arrays (``unnest``). psycopg adapts a Python list element by
element in Python, escaping each text with a regular expression: for the few arrays of a
step's write that cost more client CPU than everything else the statement sends (measured:
137 µs against 8 µs for the five pointer arrays of a two-pointer write). These functions
write the literal (``{1,2}``, ``{"a","b"}``) with ``str`` methods instead; the literal is
sent as a string of unknown type and cast by the statement (``%(positions)s::integer[]``),
so the server parses it as it would the adapted list.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["array", "integers", "texts"]

EMPTY = "{}"


def _quoted(text: str) -> str:
    # Inside double quotes only a backslash and a double quote need escaping.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def integers(values: Iterable[int]) -> str:
    """``{1,2,3}``."""
    return "{" + ",".join(map(str, values)) + "}"


def texts(values: Iterable[str]) -> str:
    """``{"a","b"}``: every element quoted, so none is read as ``NULL`` or split."""
    return "{" + ",".join(map(_quoted, values)) + "}"


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest text read back as the same double ("30.0", "0.1").
        return repr(value)
    if isinstance(value, datetime):
        # ISO 8601 with its offset; a naive time is read in the session's zone (UTC), as
        # psycopg's adaptation of it is.
        return '"' + value.isoformat() + '"'
    if isinstance(value, str):
        return _quoted(value)
    raise TypeError(f"no array literal for {type(value).__name__}")


def array(values: Iterable[object]) -> str:
    """The literal of texts, integers, floats, booleans, datetimes and ``None`` (``NULL``)."""
    return "{" + ",".join(map(_element, values)) + "}"
