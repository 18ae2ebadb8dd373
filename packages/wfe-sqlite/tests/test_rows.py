"""Pointer rows and data texts made without the converter (``wfe_sqlite._rows``): exactly the
text the converter's data gives, for any pointer, and a row that leaves out the fields at
their default reads back as the pointer a full encode gives."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowInstance
from wfe_core.serialization import from_primitive, to_primitive
from wfe_sqlite._dumps import dumps
from wfe_sqlite._rows import converter_row, data_text, fast_text, pointer_row
from wfe_sqlite.documents import InstanceDocuments


class _Colour(enum.StrEnum):
    RED = "red"


class _Size(enum.IntEnum):
    SMALL = 1


_texts = st.text(max_size=12)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), None]),
)
# JSON builtins (what the common shapes hold), and values the converter changes (tuples,
# sets, enums, Decimal, UUID, datetimes, int keys, subclasses of the builtins).
_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)
_odd_scalars = st.one_of(
    st.just(_Colour.RED),
    st.just(_Size.SMALL),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    _times,
)
_values = st.recursive(
    _plain | _odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.frozensets(st.integers(), max_size=3)
        | st.dictionaries(_texts | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def pointers(draw: st.DrawFn, common: bool | None = None) -> ExecutionPointer:
    """Pointers of every shape: those the engine makes (``common``), and ones holding values
    of other types than the fields declare, or that the converter changes (which it still
    stores). Either, drawn, when ``common`` is ``None``."""
    if common is None:
        common = draw(st.booleans())
    any_value = _plain if common else _values
    text = st.none() | _texts if common else st.none() | _texts | st.just(_Colour.RED)
    times = st.none() | _times
    texts = st.lists(_texts, max_size=3)
    return ExecutionPointer(
        step_id=draw(st.integers(min_value=0, max_value=1000)),
        id=draw(st.uuids().map(lambda u: u.hex)),
        step_name=draw(text),
        status=draw(st.sampled_from(list(PointerStatus))),
        active=cast("bool", draw(st.booleans() | st.sampled_from([0, 1]))),
        start_time=draw(times),
        end_time=draw(times),
        sleep_until=draw(times),
        persistence_data=draw(any_value),
        event_name=draw(text),
        event_key=draw(text),
        event_effective_date=draw(times),
        event_published=cast("bool", draw(st.booleans() | st.just(0))),
        event_data=draw(any_value),
        outcome=draw(any_value),
        attempt=draw(st.integers(min_value=0, max_value=5) | st.just(False)),
        predecessor_id=draw(st.none() | _texts),
        context_item=draw(any_value),
        children=draw(st.lists(st.uuids().map(lambda u: u.hex), max_size=4)),
        scope=cast(
            "list[str]", draw(texts if common else texts | texts.map(lambda items: (*items,)))
        ),
        error=draw(text),
        extensions=draw(
            st.dictionaries(_texts, any_value, max_size=3) | st.just({"wfe.internal": True})
        ),
    )


def _read_back(text: str, children: list[str]) -> ExecutionPointer:
    return from_primitive({**json.loads(text), "children": children}, ExecutionPointer)


@settings(max_examples=150, deadline=None)
@given(pointers(common=True))
def test_the_common_shapes_take_the_fast_path(pointer: ExecutionPointer) -> None:
    assert fast_text(pointer) is not None
    assert pointer_row(pointer) == converter_row(pointer)


@settings(max_examples=250, deadline=None)
@given(pointers())
def test_a_row_is_the_text_the_converter_gives(pointer: ExecutionPointer) -> None:
    text, children = pointer_row(pointer)
    assert (text, children) == converter_row(pointer)


@settings(max_examples=150, deadline=None)
@given(pointers())
def test_a_row_reads_back_as_a_full_encode(pointer: ExecutionPointer) -> None:
    """What a row leaves out is what structuring fills in: the pointer read from its row
    encodes as the one read from the converter's whole data."""
    full = to_primitive(pointer)
    from_full = from_primitive(json.loads(dumps(full)), ExecutionPointer)
    from_row = _read_back(*pointer_row(pointer))
    assert dumps(to_primitive(from_row)) == dumps(to_primitive(from_full))


@settings(max_examples=150, deadline=None)
@given(_plain | _values)
def test_data_text_is_the_text_the_converter_gives(data: Any) -> None:
    assert data_text(data) == dumps(to_primitive(data))


def test_a_row_leaves_out_the_fields_at_their_default() -> None:
    start = datetime(2026, 12, 4, 22, 33, 53, 742800, tzinfo=UTC)
    pointer = ExecutionPointer(
        step_id=1,
        id="4f3ffa3446b1108418d3de97f1199e56",
        step_name="_count",
        status=PointerStatus.COMPLETE,
        active=False,
        start_time=start,
        end_time=start,
        attempt=1,
        scope=["7e717caaf5dcbdb96e4e7ee13fe86693"],
        children=["c1"],
    )
    text, children = pointer_row(pointer)
    assert text == (
        '{"step_id":1,"id":"4f3ffa3446b1108418d3de97f1199e56","step_name":"_count",'
        '"status":"complete","active":false,"start_time":"2026-12-04T22:33:53.742800+00:00",'
        '"end_time":"2026-12-04T22:33:53.742800+00:00","attempt":1,'
        '"scope":["7e717caaf5dcbdb96e4e7ee13fe86693"]}'
    )
    assert children == ["c1"]
    assert _read_back(text, children) == pointer
    # Values equal to a default but of another type are kept (0 is not False).
    odd = ExecutionPointer(
        step_id=0, id="x", active=cast("bool", 1), attempt=False, event_published=cast("bool", 0)
    )
    assert json.loads(pointer_row(odd)[0]) == {
        "step_id": 0,
        "id": "x",
        "active": 1,
        "event_published": 0,
        "attempt": False,
    }


def test_rows_of_a_written_instance_read_back_equal() -> None:
    """Through the provider's encoder, the way a write makes them: every row of an instance
    of varied pointers reads back as its pointer."""
    documents = InstanceDocuments(verify=True)
    instance = WorkflowInstance("flow", 1, data={"n": Decimal("1.5"), "id": uuid.uuid4()})
    instance.pointers.extend(
        [
            ExecutionPointer(step_id=0, status=PointerStatus.RUNNING, children=["a", "b"]),
            ExecutionPointer(step_id=1, outcome=(1, 2), extensions={"k": {1: "int key"}}),
            ExecutionPointer(step_id=2, context_item=_Colour.RED, sleep_until=datetime.now(UTC)),
        ]
    )
    written = documents.encode(instance, 1)
    children: dict[int, list[str]] = {}
    for position, _, child in written.child_rows:
        children.setdefault(position, []).append(child)
    for position, text in written.pointer_rows:
        full = dumps(to_primitive(instance.pointers[position]))
        expected = from_primitive(json.loads(full), ExecutionPointer)
        assert _read_back(text, children.get(position, [])) == expected
    assert json.loads(written.document)["data"] == to_primitive(instance.data)
