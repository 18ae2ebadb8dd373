"""The array literals the persistence sends instead of lists read back on the server as the
values they were made from, whatever the texts hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from wfe_postgres import _arrays as arrays

TEXTS = [
    "",
    "plain",
    "NULL",
    "null",
    '{"a":"b \\"quoted\\"","c":["\\\\",1]}',
    "a,b",
    "{braces}",
    " spaced ",
    "back\\slash",
    'quote"',
    "três ☃ 𝄞",
    "new\nline\ttab",
]


def _server(postgres_url: str, literal: str, cast: str) -> list[object]:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(f"SELECT %s::{cast}", (literal,)).fetchone()
    assert row is not None
    return list(row[0])


def test_texts(postgres_url: str) -> None:
    assert _server(postgres_url, arrays.texts(TEXTS), "text[]") == TEXTS
    assert _server(postgres_url, arrays.texts([]), "text[]") == []


def test_integers(postgres_url: str) -> None:
    values = [0, 1, -7, 2**40]
    assert _server(postgres_url, arrays.integers(values), "bigint[]") == values
    assert _server(postgres_url, arrays.integers([]), "integer[]") == []


def test_mixed_columns(postgres_url: str) -> None:
    times = [
        datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
        None,
    ]
    assert _server(postgres_url, arrays.array(times), "timestamptz[]") == times
    assert _server(postgres_url, arrays.array([True, False, None]), "boolean[]") == [
        True,
        False,
        None,
    ]
    assert _server(postgres_url, arrays.array([*TEXTS, None]), "text[]") == [*TEXTS, None]
    # Floats (a lease's ttl) read back as the same doubles.
    floats = [30.0, 0.1, 1e-7, 1.5e300, -2.5, None]
    assert _server(postgres_url, arrays.array(floats), "float8[]") == floats
    with pytest.raises(TypeError, match="no array literal for bytes"):
        arrays.array([b"x"])
