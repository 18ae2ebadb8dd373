"""``InstanceSnapshot``: an instance as its JSON text would read back, without the text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from wfe_core.memory import InstanceSnapshot
from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowInstance, WorkflowStatus
from wfe_core.serialization import from_primitive, to_primitive

EAST = timezone(timedelta(hours=3))


def read_back(instance: WorkflowInstance) -> WorkflowInstance:
    """What a database provider gives back: the instance through its JSON text."""
    return from_primitive(json.loads(json.dumps(to_primitive(instance))), WorkflowInstance)


def finished(data: Any, outcome: Any = None) -> WorkflowInstance:
    started = datetime(2026, 12, 7, 10, 0, tzinfo=EAST)
    pointers = [
        ExecutionPointer(
            step_id=index,
            status=PointerStatus.COMPLETE,
            active=False,
            start_time=started,
            end_time=started.replace(tzinfo=None),
            outcome=outcome,
            children=[f"child-{index}"],
            extensions={"round": index},
        )
        for index in range(3)
    ]
    return WorkflowInstance(
        definition_id="snap",
        version=2,
        data=data,
        status=WorkflowStatus.COMPLETE,
        pointers=pointers,
        create_time=started,
        complete_time=started,
        revision=4,
    )


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        ({"count": 3, "names": ["a", "b"]}, None),
        # Not plain JSON data: JSON's view of it (lists for tuples, str keys).
        ({"pair": (1, 2), 7: "seven", "nested": {"t": ("x",)}}, (1, "one")),
        ({"when": "2026-12-07", "flag": True, "ratio": 0.5, "none": None}, {"k": [1, (2,)]}),
    ],
    ids=["plain", "tuples-and-int-keys", "scalars"],
)
def test_a_snapshot_reads_back_as_the_json_text_would(data: Any, outcome: Any) -> None:
    instance = finished(data, outcome)
    assert InstanceSnapshot(instance).instance() == read_back(instance)


def test_each_copy_is_its_own() -> None:
    instance = finished({"items": [1, 2]}, {"seen": ["a"]})
    snapshot = InstanceSnapshot(instance)
    first, second = snapshot.instance(), snapshot.instance()
    first.data["items"].append(3)
    first.pointers[0].outcome["seen"].append("b")
    first.pointers[0].children.append("more")
    # Nor does a change to the instance after the snapshot reach it.
    instance.data["items"].append(4)
    assert second.data == {"items": [1, 2]}
    assert second.pointers[0].outcome == {"seen": ["a"]}
    assert second.pointers[0].children == ["child-0"]
    assert snapshot.instance() == second


def test_times_read_back_in_utc() -> None:
    copy = InstanceSnapshot(finished({})).instance()
    assert copy.create_time.tzinfo is UTC
    assert copy.pointers[0].start_time == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
    # A naive time is taken as UTC, as a read gives it.
    assert copy.pointers[0].end_time == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def test_a_value_json_cannot_hold_is_refused() -> None:
    instance = finished({"odd": object()})
    with pytest.raises(TypeError):
        read_back(instance)
    with pytest.raises(TypeError):
        InstanceSnapshot(instance)
