"""Workflow data types are checked when a definition is built into a host: a field that
could not be stored and given back equal is refused with its path, before anything runs."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wfe_core import WorkflowBuilder
from wfe_core.errors import DefinitionError
from wfe_core.serialization import STORABLE, from_primitive, storage_problems, to_primitive


@dataclasses.dataclass
class Line:
    price: Decimal = Decimal("0")
    note: Any = None


@attrs.define
class Order:
    lines: list[Line] = attrs.Factory(list)
    by_code: dict[str, Line] = attrs.Factory(dict)
    counts: dict[int, int] = attrs.Factory(dict)
    due: datetime | None = None
    day: date | None = None
    at: time | None = None
    grace: timedelta = timedelta(0)
    ref: uuid.UUID | None = None
    tags: frozenset[str] = frozenset()
    kind: Literal["a", "b"] = "a"
    parent: Order | None = None  # recursive types are fine


@attrs.define
class Unstorable:
    handler: Callable[[], None] | None = None
    anything: object = None
    lines: list[complex] = attrs.Factory(list)
    by_pair: dict[tuple[int, int], str] = attrs.Factory(dict)


def test_supported_types_have_no_problems() -> None:
    assert storage_problems(Order) == []


def test_each_unstorable_field_is_named_by_its_path() -> None:
    problems = storage_problems(Unstorable)
    assert len(problems) == 4
    assert problems[0].startswith("Unstorable.handler: ")
    assert problems[1] == (
        "Unstorable.anything: annotated `object`, which cannot be restored; use typing.Any"
    )
    assert problems[2] == "Unstorable.lines[]: complex cannot be stored"
    assert problems[3].startswith("Unstorable.by_pair: dict keys must be strings or integers")


def test_a_definition_over_an_unstorable_type_is_refused_when_built() -> None:
    with pytest.raises(DefinitionError) as info:
        WorkflowBuilder(Unstorable).start_with(lambda ctx: None).build("bad")
    message = str(info.value)
    assert message.startswith(
        "workflow 'bad' v1 is invalid: its data type cannot be stored: Unstorable.handler: "
    )
    assert "Unstorable.lines[]: complex cannot be stored" in message
    assert message.endswith("(storable: " + STORABLE + ")")


def _stored(value: Any, cls: type) -> Any:
    # What any provider keeps: the JSON text of the unstructured value.
    return from_primitive(json.loads(json.dumps(to_primitive(value))), cls)


@given(
    amount=st.decimals(allow_nan=False, allow_infinity=False),
    grace=st.timedeltas(min_value=-timedelta(days=36_500), max_value=timedelta(days=36_500)),
    ref=st.uuids(),
    day=st.dates(),
    at=st.times(),
    tags=st.frozensets(st.text(max_size=5), max_size=4),
)
def test_values_come_back_equal(
    amount: Decimal, grace: timedelta, ref: uuid.UUID, day: date, at: time, tags: frozenset[str]
) -> None:
    order = Order(
        lines=[Line(amount)], grace=grace, ref=ref, day=day, at=at, tags=tags, counts={3: 4}
    )
    assert _stored(order, Order) == order
    assert str(_stored(order, Order).lines[0].price) == str(amount)  # exact, not just equal
