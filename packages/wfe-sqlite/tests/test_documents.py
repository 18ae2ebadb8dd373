"""Instances stored as a head and pointer rows written from what changed
(``wfe_sqlite.documents``): what is stored reads back as a full encode, whatever happens
between writes, and a write stores only the pointers (and child ids) that changed."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from wfe_core.errors import ConcurrencyError
from wfe_core.models import (
    Event,
    ExecutionPointer,
    PointerStatus,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.serialization import to_primitive
from wfe_core.spi import utcnow
from wfe_sqlite import SqlitePersistence
from wfe_sqlite.documents import InstanceDocuments, dumps

if TYPE_CHECKING:
    from pathlib import Path


def _full(instance: WorkflowInstance) -> str:
    """The document a full encode of ``instance`` (as stored, revision included) gives."""
    primitive = to_primitive(instance)
    return dumps(primitive)


#: What a pointer row leaves out: the fields at their default, as a full encode writes them.
_POINTER_DEFAULTS = {
    name: value
    for name, value in to_primitive(ExecutionPointer(step_id=0)).items()
    if name not in ("step_id", "id", "children")
}


def _stored(path: Path, workflow_id: str) -> tuple[dict[str, Any], int]:
    """The instance (its JSON data, put together from its rows) and revision in the file,
    read past the provider."""
    with sqlite3.connect(path) as conn:
        document, revision = conn.execute(
            "SELECT document, revision FROM wfe_workflows WHERE id = ?", (workflow_id,)
        ).fetchone()
        head = json.loads(document)
        assert head["pointers"] == []
        pointers = [
            {**_POINTER_DEFAULTS, **json.loads(text), "children": []}
            for (text,) in conn.execute(
                "SELECT document FROM wfe_pointers WHERE workflow_id = ? ORDER BY position",
                (workflow_id,),
            )
        ]
        for position, child in conn.execute(
            "SELECT position, child_id FROM wfe_pointer_children WHERE workflow_id = ?"
            " ORDER BY position, idx",
            (workflow_id,),
        ):
            pointers[position]["children"].append(child)
    head["pointers"] = pointers
    return head, revision


def _assert_stored_is_full(path: Path, instance: WorkflowInstance) -> None:
    stored, revision = _stored(path, instance.id)
    assert revision == instance.revision
    assert stored == json.loads(_full(instance))


def _step(instance: WorkflowInstance, pointer: ExecutionPointer, *, next_step: bool) -> set[str]:
    """Finish ``pointer`` (and start the next one); the ids of the pointers changed."""
    now = utcnow()
    pointer.status = PointerStatus.COMPLETE
    pointer.active = False
    pointer.end_time = now
    pointer.outcome = {"value": pointer.step_id, "text": "é ✓"}
    changed = {pointer.id}
    if next_step:
        following = ExecutionPointer(
            step_id=pointer.step_id + 1,
            step_name="next",
            status=PointerStatus.RUNNING,
            start_time=now,
            predecessor_id=pointer.id,
            attempt=1,
        )
        instance.pointers.append(following)
        # New pointers may or may not be listed: list every other one.
        if pointer.step_id % 2:
            changed.add(following.id)
    return changed


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "wfe.db"


@pytest.mark.anyio
async def test_stored_rows_equal_a_full_encode_across_writes(db_path: Path) -> None:
    # Data whose text holds what the splice looks for, and text needing escapes.
    data = {"pointers": [], "quote": 'a "pointers":[] b', "unicode": "ü\u2028", "n": 1.5}
    instance = WorkflowInstance("flow", 1, data=data, reference="ref")
    async with SqlitePersistence(f"sqlite:///{db_path}", verify_changes=False) as persistence:
        await persistence.create_workflow(instance)
        _assert_stored_is_full(db_path, instance)

        first = ExecutionPointer(step_id=0, status=PointerStatus.RUNNING, start_time=utcnow())
        instance.pointers.append(first)
        instance.next_execution = utcnow()
        await persistence.persist_workflow(instance, changed_pointers=())  # new: not listed
        _assert_stored_is_full(db_path, instance)

        for _ in range(6):
            pointer = instance.pointers[-1]
            changed = _step(instance, pointer, next_step=True)
            instance.data["count"] = pointer.step_id
            await persistence.persist_workflow(instance, changed_pointers=changed)
            _assert_stored_is_full(db_path, instance)
            assert len(persistence.documents) == 1

        # Only the instance's own fields.
        instance.description = "described"
        instance.next_execution = None
        await persistence.persist_workflow(instance, changed_pointers=[])
        _assert_stored_is_full(db_path, instance)

        # A write not naming what changed encodes everything.
        instance.pointers[0].extensions["late"] = True
        await persistence.persist_workflow(instance)
        _assert_stored_is_full(db_path, instance)

        # The last write: the instance is not kept once finished.
        _step(instance, instance.pointers[-1], next_step=False)
        instance.status = WorkflowStatus.COMPLETE
        instance.complete_time = utcnow()
        await persistence.persist_workflow(instance, changed_pointers=[instance.pointers[-1].id])
        _assert_stored_is_full(db_path, instance)
        assert len(persistence.documents) == 0
        assert await persistence.get_workflow(instance.id) == instance


def _columns(path: Path, workflow_id: str) -> tuple[Any, ...]:
    """The head's columns the queries use, and the revision, read past the provider."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT status, reference, next_execution, complete_time, revision"
            " FROM wfe_workflows WHERE id = ?",
            (workflow_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.anyio
async def test_the_columns_follow_the_head_whether_a_write_sets_them_or_not(
    db_path: Path,
) -> None:
    """Steps that change only data and pointers leave the head's columns (status, reference,
    due and completion times) as stored, without setting them again; a write that changes
    any head field stores them, and the queries built on them see every change."""
    due = utcnow()
    instance = WorkflowInstance("flow", 1, data={"i": 0}, reference="r", next_execution=due)
    instance.pointers.append(ExecutionPointer(step_id=0, status=PointerStatus.RUNNING))
    async with SqlitePersistence(f"sqlite:///{db_path}", verify_changes=False) as persistence:
        await persistence.create_workflow(instance)
        created = _columns(db_path, instance.id)
        for i in range(1, 4):  # rounds of a loop: data and pointers only
            changed = _step(instance, instance.pointers[-1], next_step=True)
            instance.data["i"] = i
            await persistence.persist_workflow(instance, changed_pointers=changed, fence=7)
            assert _columns(db_path, instance.id) == (*created[:4], 1 + i)
            _assert_stored_is_full(db_path, instance)
        assert await persistence.get_runnable_instances(due) == [instance.id]

        # Due later: the column moves, and the instance is not due now any more.
        later = utcnow().replace(year=2100)
        instance.next_execution = later
        await persistence.persist_workflow(instance, changed_pointers=[], fence=7)
        assert _columns(db_path, instance.id)[2] != created[2]
        assert await persistence.get_runnable_instances(utcnow()) == []
        # Then a data-only write again: the new due time stays.
        instance.data["i"] = 10
        await persistence.persist_workflow(instance, changed_pointers=[])
        assert await persistence.get_runnable_instances(utcnow()) == []
        assert await persistence.get_runnable_instances(later) == [instance.id]

        # Finished: status and completion time are stored.
        _step(instance, instance.pointers[-1], next_step=False)
        instance.status = WorkflowStatus.COMPLETE
        instance.complete_time = utcnow()
        instance.next_execution = None
        await persistence.persist_workflow(instance, changed_pointers=[instance.pointers[-1].id])
        status, reference, next_execution, complete_time, _ = _columns(db_path, instance.id)
        assert (status, reference, next_execution) == ("complete", "r", None)
        assert complete_time is not None
        assert await persistence.get_workflow(instance.id) == instance


@pytest.mark.anyio
async def test_a_failed_write_drops_what_was_kept(db_path: Path) -> None:
    instance = WorkflowInstance("flow", 1, data={})
    instance.pointers.append(ExecutionPointer(step_id=0, status=PointerStatus.RUNNING))
    event = Event("e", "k")
    async with SqlitePersistence(f"sqlite:///{db_path}", verify_changes=False) as persistence:
        await persistence.create_workflow(instance)
        await persistence.create_event(event)
        pointer = instance.pointers[0]
        changed = _step(instance, pointer, next_step=True)
        # Refused after the update (an event id already stored): the whole write rolls back.
        with pytest.raises(ConcurrencyError):
            await persistence.persist_workflow(instance, events=[event], changed_pointers=changed)
        assert instance.revision == 1
        assert len(persistence.documents) == 0

        # The retry names only what changed since the failure; the first pointer's change,
        # not stored, is stored now, since nothing kept is used.
        instance.pointers[-1].attempt = 2
        await persistence.persist_workflow(instance, changed_pointers=[instance.pointers[-1].id])
        _assert_stored_is_full(db_path, instance)
        assert (await persistence.get_workflow(instance.id)).pointers[0].outcome is not None


@pytest.mark.anyio
async def test_another_writer_in_between_means_a_full_encode(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    instance = WorkflowInstance("flow", 1, data={})
    instance.pointers.append(ExecutionPointer(step_id=0, status=PointerStatus.RUNNING))
    async with (
        SqlitePersistence(url, verify_changes=False) as mine,
        SqlitePersistence(url, share_connections=False, verify_changes=False) as other,
    ):
        await mine.create_workflow(instance)
        await mine.persist_workflow(instance, changed_pointers=[])
        assert instance.revision == 2

        # Another process changes a pointer.
        theirs = await other.get_workflow(instance.id)
        theirs.pointers[0].extensions["theirs"] = 1
        await other.persist_workflow(theirs)

        # A write from the revision kept here is refused, and drops what is kept.
        stale_change = _step(instance, instance.pointers[0], next_step=True)
        with pytest.raises(ConcurrencyError):
            await mine.persist_workflow(instance, changed_pointers=stale_change)
        assert len(mine.documents) == 0

        # Read back and written here (revision 4, kept), then the other writes revision 5.
        loaded = await mine.get_workflow(instance.id)
        loaded.pointers[0].attempt = 5
        await mine.persist_workflow(loaded, changed_pointers=[loaded.pointers[0].id])
        theirs = await other.get_workflow(instance.id)
        theirs.pointers[0].extensions["again"] = 2
        await other.persist_workflow(theirs)

        # Read back (revision 5): what is kept here (revision 4) is not used, so the other's
        # change is stored with this one.
        loaded = await mine.get_workflow(instance.id)
        loaded.data["mine"] = True
        await mine.persist_workflow(loaded, changed_pointers=[])
        _assert_stored_is_full(db_path, loaded)
        assert loaded.pointers[0].extensions == {"theirs": 1, "again": 2}


@pytest.mark.anyio
async def test_verify_mode_names_a_changed_pointer_not_listed(db_path: Path) -> None:
    instance = WorkflowInstance("flow", 1)
    first, second = ExecutionPointer(step_id=0), ExecutionPointer(step_id=1)
    instance.pointers.extend([first, second])
    async with SqlitePersistence(f"sqlite:///{db_path}", verify_changes=True) as persistence:
        await persistence.create_workflow(instance)
        first.status = PointerStatus.RUNNING
        second.attempt = 1
        with pytest.raises(AssertionError, match=second.id) as raised:
            await persistence.persist_workflow(instance, changed_pointers=[first.id])
        assert first.id not in str(raised.value).split("not in")[0]
        # Nothing stored, nothing kept.
        assert _stored(db_path, instance.id)[1] == 1
        assert len(persistence.documents) == 0
        # Listed (or not listing at all), it is stored.
        await persistence.persist_workflow(instance, changed_pointers=[first.id, second.id])
        _assert_stored_is_full(db_path, instance)


def test_verify_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_VERIFY_POINTER_CHANGES", "1")
    assert SqlitePersistence("sqlite:///:memory:").documents.verify
    monkeypatch.setenv("WFE_VERIFY_POINTER_CHANGES", "0")
    assert not SqlitePersistence("sqlite:///:memory:").documents.verify
    assert SqlitePersistence("sqlite:///:memory:", verify_changes=True).documents.verify


def _written(documents: InstanceDocuments, pointers: int = 1) -> WorkflowInstance:
    instance = WorkflowInstance("flow", 1)
    instance.pointers.extend(ExecutionPointer(step_id=i) for i in range(pointers))
    documents.remember(instance.id, documents.encode(instance, 1))
    instance.revision = 1
    return instance


def test_what_is_kept_is_bounded() -> None:
    documents = InstanceDocuments(max_entries=3)
    instances = [_written(documents) for _ in range(5)]
    assert documents.kept() == [i.id for i in instances[2:]]
    # The least recently written go first.
    documents.remember(instances[2].id, documents.encode(instances[2], 2, ()))
    newest = _written(documents)
    assert documents.kept() == [instances[4].id, instances[2].id, newest.id]

    # A bound on pointers too: long instances push others out, and one too long is not kept.
    documents = InstanceDocuments(max_pointers=10)
    for _ in range(20):
        _written(documents, pointers=1)
    assert documents.pointers <= 10
    assert len(documents) <= 10
    long = _written(documents, pointers=50)
    assert long.id not in documents
    assert documents.pointers <= 10
    assert documents.pointers == sum(map(documents.kept_pointers, documents.kept()))

    # Finished or forgotten: dropped.
    documents = InstanceDocuments()
    instance = _written(documents)
    instance.status = WorkflowStatus.TERMINATED
    documents.remember(instance.id, documents.encode(instance, 2, ()))
    assert len(documents) == 0
    instance = _written(documents)
    documents.forget(instance.id)
    assert (len(documents), documents.pointers) == (0, 0)


def test_an_older_revision_does_not_replace_a_newer_one() -> None:
    documents = InstanceDocuments()
    instance = _written(documents)
    older = documents.encode(instance, 2, ())
    instance.revision = 2
    newer = documents.encode(instance, 3)
    documents.remember(instance.id, newer)
    documents.remember(instance.id, older)
    assert documents.kept_revision(instance.id) == 3


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "b": {"c": 'ü \u2028 " \\ \x00'}},
        [float("nan"), float("inf"), -float("inf"), 1e300, -0.0],
        "plain",
        {1: "int key", None: "none key", 2.5: "float key"},
        [],
        {},
    ],
)
def test_dumps_writes_what_the_json_encoder_writes(value: object) -> None:
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    assert dumps(value) == encoder.encode(value)


def test_dumps_refuses_what_json_cannot_encode() -> None:
    with pytest.raises(TypeError):
        dumps({"a": object()})


@attrs.define
class _Data:
    name: str
    when: datetime
    tags: list[str]


def test_data_of_an_attrs_class_is_stored_as_a_full_encode_writes_it() -> None:
    documents = InstanceDocuments(verify=True)
    now = utcnow()
    instance = WorkflowInstance("flow", 1, data=_Data("x", now, ["a"]), next_execution=now)
    instance.pointers.append(ExecutionPointer(step_id=0))
    written = documents.encode(instance, 1)
    assert written.document == _full_as(instance, 1)
    documents.remember(instance.id, written)
    instance.revision = 1
    instance.data.tags.append("b")
    instance.pointers.append(ExecutionPointer(step_id=1))
    written = documents.encode(instance, 2, ())
    assert written.document == _full_as(instance, 2)


def _full_as(instance: WorkflowInstance, revision: int) -> str:
    """The head document a full encode gives (the pointers are rows)."""
    primitive = to_primitive(instance)
    primitive["revision"] = revision
    primitive["pointers"] = []
    return dumps(primitive)


def test_a_write_stores_only_what_changed_however_long_the_instance() -> None:
    documents = InstanceDocuments(verify=True)
    instance = WorkflowInstance("flow", 1, data={"i": 0})
    loop = ExecutionPointer(step_id=0, status=PointerStatus.RUNNING)
    instance.pointers.append(loop)
    documents.remember(instance.id, documents.encode(instance, 1))
    instance.revision = 1
    for round_no in range(200):
        # One round of a loop: the container starts a branch, which finishes.
        branch = ExecutionPointer(step_id=1, scope=[loop.id], status=PointerStatus.COMPLETE)
        branch.active = False
        instance.pointers.append(branch)
        loop.children.append(branch.id)
        loop.persistence_data = {"rounds": round_no + 1}
        instance.data["i"] = round_no + 1
        written = documents.encode(instance, instance.revision + 1, {loop.id, branch.id})
        # The container and the new branch, and one child id: not the 200 before them.
        assert not written.full
        assert sorted(position for position, _ in written.pointer_rows) == [0, round_no + 1]
        assert written.child_rows == [(0, round_no, branch.id)]
        documents.remember(instance.id, written)
        instance.revision += 1

    # Children changed other than by appending: the oracle says so.
    loop.children[0] = "replaced"
    with pytest.raises(AssertionError, match="not only appended"):
        documents.encode(instance, instance.revision + 1, {loop.id})


@pytest.mark.anyio
async def test_children_that_shrank_are_stored_again(db_path: Path) -> None:
    instance = WorkflowInstance("flow", 1)
    loop = ExecutionPointer(step_id=0, children=["a", "b", "c"])
    instance.pointers.append(loop)
    async with SqlitePersistence(f"sqlite:///{db_path}", verify_changes=False) as persistence:
        await persistence.create_workflow(instance)
        loop.children[:] = ["d"]
        await persistence.persist_workflow(instance, changed_pointers=[loop.id])
        _assert_stored_is_full(db_path, instance)
        assert (await persistence.get_workflow(instance.id)).pointers[0].children == ["d"]
