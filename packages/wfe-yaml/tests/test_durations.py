from __future__ import annotations

from datetime import timedelta

import pytest

from wfe_yaml import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("5s", timedelta(seconds=5)),
        ("1.5s", timedelta(seconds=1.5)),
        ("2m", timedelta(minutes=2)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30s", timedelta(seconds=90)),
        ("2s500ms", timedelta(seconds=2.5)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "5 s", "s", "1d", "5sec", "-5s", "1m1h", "ms", "5ss", "1h 30m", 5, None, True]
)
def test_anything_else_is_an_error(text: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


def test_a_number_without_unit_gets_a_hint() -> None:
    with pytest.raises(ValueError, match="write 5s for seconds"):
        parse_duration(5)


@pytest.mark.parametrize("text", ["250ms", "5s", "1.5s", "2m", "1h", "1h30m"])
def test_format_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text
