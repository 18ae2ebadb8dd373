"""MemoryPersistence encodes again only the pointers that changed: every change must still
be stored, whatever the caller changed in place between writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from wfe_core.errors import ConcurrencyError
from wfe_core.memory import MemoryPersistence
from wfe_core.models import (
    Event,
    ExecutionPointer,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.testing.conformance._support import as_stored

pytestmark = pytest.mark.anyio


def _instance(pointers: int) -> WorkflowInstance:
    return WorkflowInstance(
        definition_id="flow",
        version=1,
        data={"n": 1},
        pointers=[
            ExecutionPointer(step_id=i, persistence_data={"deep": [i]}, extensions={"k": {}})
            for i in range(pointers)
        ],
    )


async def test_changes_made_in_place_between_writes_are_all_stored() -> None:
    persistence = MemoryPersistence()
    instance = _instance(4)
    await persistence.create_workflow(instance)
    changes = [
        lambda: instance.pointers[1].persistence_data["deep"].append("x"),
        lambda: instance.pointers[2].extensions["k"].update(v=[1, 2]),
        lambda: instance.pointers[0].children.append("child"),
        lambda: setattr(instance.pointers[3], "status", PointerStatus.COMPLETE),
        lambda: instance.pointers.append(ExecutionPointer(step_id=9)),
        lambda: instance.pointers.reverse(),
        lambda: instance.pointers.pop(1),
        lambda: instance.pointers.insert(0, ExecutionPointer(step_id=7)),
        lambda: setattr(instance.pointers[0], "outcome", {"a": [1, {"b": None}]}),
        lambda: instance.pointers[0].outcome["a"][1].update(b="set"),
        lambda: instance.pointers.clear(),
    ]
    for change in changes:
        change()
        await persistence.persist_workflow(instance)
        assert await persistence.get_workflow(instance.id) == as_stored(instance)


async def test_unchanged_pointers_keep_their_text_and_times_are_utc() -> None:
    persistence = MemoryPersistence()
    plus_two = timezone(timedelta(hours=2))
    instance = _instance(2)
    instance.create_time = datetime(2030, 1, 1, 12, tzinfo=plus_two)
    instance.next_execution = datetime(2030, 1, 1, 9)  # naive: read as UTC
    await persistence.create_workflow(instance)
    instance.pointers[1].start_time = datetime(2030, 1, 1, 12, tzinfo=plus_two)
    instance.status = WorkflowStatus.SUSPENDED
    await persistence.persist_workflow(instance)
    got = await persistence.get_workflow(instance.id)
    assert got == as_stored(instance)
    assert got.pointers[1].start_time == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert got.next_execution == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert list(await persistence.get_runnable_instances(datetime(2031, 1, 1, tzinfo=UTC))) == []
    listed = await persistence.list_workflows(status=WorkflowStatus.SUSPENDED)
    assert [item.id for item in listed.items] == [instance.id]


async def test_a_value_that_fails_to_encode_stores_nothing() -> None:
    persistence = MemoryPersistence()
    instance = _instance(2)
    await persistence.create_workflow(instance)
    expected = as_stored(instance)
    instance.pointers[1].outcome = object()
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the encoder raises
        await persistence.persist_workflow(instance)
    assert await persistence.get_workflow(instance.id) == expected


async def test_reads_share_nothing_with_each_other_or_the_store() -> None:
    persistence = MemoryPersistence()
    instance = _instance(2)
    instance.pointers[0].outcome = {"a": [1, {"b": 2}]}
    await persistence.create_workflow(instance)
    expected = as_stored(instance)
    first = await persistence.get_workflow(instance.id)
    first.pointers[0].outcome["a"][1]["b"] = 3
    first.pointers[1].persistence_data["deep"].append(9)
    first.pointers[1].extensions["k"]["x"] = 1
    first.pointers[0].children.append("c")
    second = (await persistence.get_workflows([instance.id]))[0]
    assert second == expected
    assert second.pointers[0].outcome is not first.pointers[0].outcome
    (listed,) = (await persistence.list_workflows()).items
    assert listed == expected


async def test_listed_changes_are_stored_and_a_reordered_list_is_compared_whole() -> None:
    persistence = MemoryPersistence(verify_changes=False)
    instance = _instance(3)
    await persistence.create_workflow(instance)
    instance.pointers[2].status = PointerStatus.RUNNING
    instance.pointers.append(ExecutionPointer(step_id=5))
    await persistence.persist_workflow(
        instance, changed_pointers={instance.pointers[2].id, instance.pointers[3].id}
    )
    assert await persistence.get_workflow(instance.id) == as_stored(instance)
    # The list names a pointer that moved: the store cannot trust positions, so it compares.
    instance.pointers.reverse()
    instance.pointers[0].status = PointerStatus.COMPLETE
    await persistence.persist_workflow(instance, changed_pointers={instance.pointers[0].id})
    assert await persistence.get_workflow(instance.id) == as_stored(instance)


async def test_verify_changes_names_a_change_missing_from_the_list() -> None:
    persistence = MemoryPersistence(verify_changes=True)
    instance = _instance(3)
    await persistence.create_workflow(instance)
    instance.pointers[0].status = PointerStatus.COMPLETE
    instance.pointers[1].status = PointerStatus.COMPLETE
    with pytest.raises(AssertionError, match=instance.pointers[1].id):
        await persistence.persist_workflow(instance, changed_pointers={instance.pointers[0].id})
    # Nothing was stored by the refused write.
    assert (await persistence.get_workflow(instance.id)).revision == 1


async def test_values_json_would_change_come_back_as_json_gives_them() -> None:
    """Kept without text, values still read back as a database's JSON gives them."""
    persistence = MemoryPersistence()
    plus_two = timezone(timedelta(hours=2))
    instance = _instance(1)
    instance.data = {"pair": (1, 2), "by_number": {1: "one"}, "nested": [{"t": (3,)}]}
    instance.pointers[0].persistence_data = {"pair": (4, 5)}
    instance.pointers[0].outcome = {2: "two"}
    instance.pointers[0].start_time = datetime(2030, 1, 1, 12, tzinfo=plus_two)
    await persistence.create_workflow(instance)
    stored = await persistence.get_workflow(instance.id)
    assert stored == as_stored(instance)
    assert stored.data == {"pair": [1, 2], "by_number": {"1": "one"}, "nested": [{"t": [3]}]}
    assert stored.pointers[0].outcome == {"2": "two"}
    assert stored.pointers[0].start_time.tzinfo is UTC


async def test_a_value_json_cannot_hold_refuses_the_write() -> None:
    persistence = MemoryPersistence()
    instance = _instance(2)
    await persistence.create_workflow(instance)
    instance.pointers[1].persistence_data = {"handle": object()}
    with pytest.raises(TypeError):
        await persistence.persist_workflow(instance, changed_pointers={instance.pointers[1].id})
    stored = await persistence.get_workflow(instance.id)
    assert stored.revision == 1
    assert stored.pointers[1].persistence_data == {"deep": [1]}


async def test_the_head_is_kept_again_when_its_data_or_fields_change() -> None:
    """A write reuses the stored head only when nothing in it changed, types included."""
    persistence = MemoryPersistence()
    instance = _instance(1)
    instance.data = {"flag": 1, "items": [1, 2]}
    await persistence.create_workflow(instance)
    changes = [
        lambda: None,  # nothing: the head is reused
        lambda: instance.data.update(flag=True),  # equal, but stored differently
        lambda: instance.data["items"].append(3),
        lambda: instance.data.update(items=(1, 2, 3)),  # a tuple is stored as a list
        lambda: setattr(instance, "reference", "order-7"),
        lambda: setattr(instance, "status", WorkflowStatus.SUSPENDED),
        lambda: setattr(instance, "data", {"flag": 1.0, "items": []}),
    ]
    for change in changes:
        change()
        await persistence.persist_workflow(instance, changed_pointers=())
        stored = await persistence.get_workflow(instance.id)
        assert stored == as_stored(instance)
        # Compared as text too: 1 == True == 1.0, but they are stored differently.
        assert json.dumps(stored.data) == json.dumps(as_stored(instance).data)
    assert (await persistence.get_workflow(instance.id)).data == {"flag": 1.0, "items": []}


async def test_pointer_fields_of_unexpected_types_come_back_as_json_gives_them() -> None:
    """A snapshot keeps a pointer's fields as they are only for the types it expects; any
    other type (one field is enough) reads back as it would from JSON text."""
    persistence = MemoryPersistence()
    instance = _instance(0)
    plus_two = timezone(timedelta(hours=2))
    odd: list[dict[str, object]] = [
        {},  # the expected types: kept as they are
        {"step_name": 5},  # an int where a str is expected
        {"active": 1, "attempt": True, "predecessor_id": PointerStatus.RUNNING},
        {"children": ("a", "b"), "scope": ["x"]},
        {"children": [1]},
        {
            "end_time": datetime(2030, 1, 1, 12, tzinfo=plus_two),
            "sleep_until": datetime(2030, 1, 1),
        },
        {"outcome": 1.5, "context_item": "item", "event_data": [{"k": (1,)}]},
        {"extensions": {"k": {"n": [1, None, True]}}, "persistence_data": []},
    ]
    for step_id, fields in enumerate(odd):
        instance.pointers.append(ExecutionPointer(step_id=step_id, **fields))  # type: ignore[arg-type]
    await persistence.create_workflow(instance)
    assert await persistence.get_workflow(instance.id) == as_stored(instance)
    # Written again, listed or compared, each comes back the same.
    for pointer in instance.pointers:
        pointer.attempt = 2
    await persistence.persist_workflow(
        instance, changed_pointers=[pointer.id for pointer in instance.pointers]
    )
    stored = await persistence.get_workflow(instance.id)
    assert stored == as_stored(instance)
    assert [type(pointer.step_name) for pointer in stored.pointers[:2]] == [type(None), str]
    assert stored.pointers[3].children == ["a", "b"]
    assert stored.pointers[5].end_time.tzinfo is UTC  # type: ignore[union-attr]


async def test_a_refused_write_leaves_the_stored_row_as_it_was() -> None:
    """The row is changed in place, but only once the whole write is built."""
    persistence = MemoryPersistence()
    instance = _instance(2)
    await persistence.create_workflow(instance)
    await persistence.create_event(Event(name="e", key="k", id="taken"))
    expected = as_stored(instance)
    expected.revision = 1

    def change_everything() -> None:
        instance.data = {"n": 2}
        instance.pointers[0].status = PointerStatus.COMPLETE
        instance.pointers.append(ExecutionPointer(step_id=5))

    change_everything()
    instance.pointers.append(ExecutionPointer(step_id=6, outcome=object()))
    with pytest.raises(TypeError):
        await persistence.persist_workflow(instance, changed_pointers={instance.pointers[0].id})
    assert await persistence.get_workflow(instance.id) == expected
    instance.pointers.pop()
    with pytest.raises(ConcurrencyError):
        await persistence.persist_workflow(
            instance,
            changed_pointers={instance.pointers[0].id},
            events=[Event(name="e", key="k", id="taken")],
        )
    assert await persistence.get_workflow(instance.id) == expected
    # The same write without the refused parts is stored whole, and the next one on top of it.
    await persistence.persist_workflow(instance, changed_pointers={instance.pointers[0].id})
    assert await persistence.get_workflow(instance.id) == as_stored(instance)
    instance.pointers[2].status = PointerStatus.RUNNING
    await persistence.persist_workflow(instance, changed_pointers={instance.pointers[2].id})
    assert await persistence.get_workflow(instance.id) == as_stored(instance)
