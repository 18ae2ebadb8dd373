"""Workflow instances stored as a head row and one row per pointer, written from what changed.

An instance is stored as its *head* (``wfe_workflows.document``: the instance without its
pointers, which reads ``"pointers":[]``), one row per pointer in ``wfe_pointers`` (the
pointer's JSON without its ``children`` and the fields at their default, by position: see
:mod:`wfe_sqlite._rows`), and one row per child id in
``wfe_pointer_children``. The executor writes the instance after every step and names the
pointers it changed (``changed_pointers``), so a write stores the head, the rows of those
pointers and the child ids added since the last write: what a step costs to store does not
grow with the number of steps the instance already ran. (The document of schema versions 1-3
held every pointer, so a write of step 10,000 stored 10,000 pointers.)

:class:`InstanceDocuments` keeps, for each instance this process wrote last, the head's text
pieces, each pointer's position and how many child ids are stored for it. A write from the
revision kept, with ``changed_pointers``, stores only the changed and new pointers; any other
write (``changed_pointers`` is ``None``, or the instance was written elsewhere since) rewrites
all of the instance's rows. The persistence contract says the engine only appends pointers
and child ids, so a changed pointer's stored child ids are a prefix of its list; a list that
got shorter is stored again whole.

A kept entry is used only for the revision it was written as: a write by any other process or
provider moves the stored revision on, and a write from a stale revision is refused by the
database before anything is stored. The caller drops what it keeps for an instance when a
write fails, since it may then not know what is stored.

With ``verify`` on (``WFE_VERIFY_POINTER_CHANGES=1``, which the test suites set), the texts
and child ids of every pointer are kept too, and a pointer that changed without being named,
or whose child ids were changed other than by appending, raises :class:`AssertionError`.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.models import ExecutionPointer, WorkflowInstance, WorkflowStatus
from wfe_core.serialization import converter, to_primitive
from wfe_sqlite._dumps import dumps
from wfe_sqlite._rows import data_text, pointer_row

if TYPE_CHECKING:
    from collections.abc import Collection

    from wfe_core.providers import PointerWrite


__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_POINTERS",
    "InstanceDocuments",
    "Written",
    "dumps",
    "pointer_primitive",
]


#: How many instances' texts are kept at most (the least recently written go first): the
#: instances a host runs at once, with room to spare.
DEFAULT_MAX_ENTRIES = 4096
#: How many pointers are kept track of at most, over all instances (an id and two integers
#: each; their texts too with ``verify``): a bound on the memory kept when instances grow long.
DEFAULT_MAX_POINTERS = 2_000_000

_RUNNABLE = WorkflowStatus.RUNNABLE


#: The instance's fields in its head but its data, pointers and revision: each write compares
#: them with the ones its head text was made from, by identity (an equal datetime in another
#: time zone encodes differently, and a new value is a new object).
_head_state = operator.attrgetter(
    *(
        field.name
        for field in attrs.fields(WorkflowInstance)
        if field.name not in ("data", "pointers", "revision")
    )
)
# The head's text is made with placeholders in the slots of the data, the pointers and the
# revision, to find them: without data and pointers it holds no nested object, and no user
# text but in strings, whose quotes are escaped, so each key with its quotes is found once.
# Each slot: the field, its placeholder, the placeholder's text, and how many characters of
# that text stay with the pieces on either side (the pointers' brackets). In the fields'
# order, the order the converter writes them in.
_SLOTS: tuple[tuple[str, Any, str, int], ...] = (
    ("data", None, "null", 0),
    ("pointers", [], "[]", 1),
    ("revision", 0, "0", 0),
)
if [
    f.name for f in attrs.fields(WorkflowInstance) if f.name in ("data", "pointers", "revision")
] != [
    slot[0] for slot in _SLOTS
]:  # pragma: no cover - a change of the model this module must follow
    raise RuntimeError("wfe_sqlite.documents: WorkflowInstance's fields moved")


@attrs.define(eq=False)
class _Head:
    """The text of an instance without its data, pointers and revision, in four pieces: the
    data goes after the first, the pointers' texts (none: they are rows) after the second,
    the revision after the third."""

    #: The fields it was made from (see ``_head_state``).
    state: tuple[Any, ...]
    pieces: tuple[str, str, str, str]
    status: str


@attrs.define(eq=False)
class Written:
    """One write of an instance: its head document and the pointer rows to store."""

    revision: int
    #: The head document (the instance without its pointers).
    document: str
    #: The instance's ``status`` as stored (the status column).
    status: str
    head: _Head
    #: Whether every row of the instance is written again (the old ones deleted first).
    full: bool
    #: ``(position, document)`` of each pointer row to store (insert or replace).
    pointer_rows: list[tuple[int, str]]
    #: ``(position, index, child id)`` of each child row to insert.
    child_rows: list[tuple[int, int, str]]
    #: Positions whose child rows are deleted before ``child_rows`` are inserted.
    reset_children: list[int]
    #: Each pointer's position by id, its stored child count, and the positions of the
    #: active pointers, once written (shared with what was kept, and updated by
    #: ``InstanceDocuments.remember``: see ``updates``).
    positions: dict[str, int]
    counts: list[int]
    active: set[int]
    #: ``(position, pointer id, child count, active)`` to set in ``positions``/``counts``/
    #: ``active`` on success.
    updates: list[tuple[int, str, int, bool]]
    #: With ``verify``: each pointer's text and child ids, as stored.
    texts: list[str] | None
    children: list[list[str]] | None
    #: Whether the instance may be written again (the others are not worth keeping).
    runnable: bool
    #: Whether the head's fields but the data are those of the revision kept (written by
    #: this provider): then the row's columns made from them (status, reference, due and
    #: completion times) already hold their values, and an update need not set them again.
    same_head: bool = False
    #: ``(position, index)``: child rows of the pointer at ``position`` deleted from
    #: ``index`` on before ``child_rows`` are inserted (a live part's pointer that held only
    #: its ids from ``index`` on, written without a kept count: see ``encode_live``).
    trim_children: list[tuple[int, int]] = attrs.Factory(list)


@attrs.define(eq=False)
class _Kept:
    """What is kept of a :class:`Written` once stored."""

    revision: int
    head: _Head
    positions: dict[str, int]
    counts: list[int]
    #: The positions of the active pointers (what a live part reads).
    active: set[int]
    texts: list[str] | None
    children: list[list[str]] | None


def _new_head(instance: WorkflowInstance, state: tuple[Any, ...]) -> _Head:
    data, pointers = instance.data, instance.pointers
    # Without copying the instance: nothing awaits in between.
    instance.data, instance.pointers = None, []
    try:
        head: dict[str, Any] = to_primitive(instance)
    finally:
        instance.data, instance.pointers = data, pointers
    for name, placeholder, _, _ in _SLOTS:
        head[name] = placeholder
    text = dumps(head)
    pieces: list[str] = []
    end = 0
    for name, _, encoded, kept in _SLOTS:
        start = text.index(f'"{name}":{encoded}', end) + len(name) + 3
        pieces.append(text[end : start + kept])
        end = start + len(encoded) - kept
    pieces.append(text[end:])
    first, second, third, last = pieces
    return _Head(state, (first, second, third, last), str(head["status"]))


def _head_of(
    instance: WorkflowInstance, previous: _Kept | None, revision: int
) -> tuple[_Head, bool, str]:
    """The head of ``instance`` (``previous``'s when its fields are the same), whether it
    is, and the head document as ``revision``."""
    state = _head_state(instance)
    head = previous.head if previous is not None else None
    # The head's fields are immutable values: the same objects encode the same.
    same_head = head is not None and all(map(operator.is_, state, head.state))
    if head is None or not same_head:
        head = _new_head(instance, state)
    return head, same_head, _document(head, data_text(instance.data), revision)


def _document(head: _Head, data: str, revision: int) -> str:
    """The head document of ``head`` with ``data`` (its text) and ``revision``."""
    first, second, third, last = head.pieces
    return "".join((first, data, second, third, str(revision), last))


# The converter's own hook, called without looking it up for each pointer.
_unstructure_pointer = converter.get_unstructure_hook(ExecutionPointer)


def pointer_primitive(pointer: ExecutionPointer) -> tuple[dict[str, Any], list[str]]:
    """The pointer's JSON data without ``children`` (every field, as the converter gives
    it; a row leaves out the fields at their default: see :mod:`wfe_sqlite._rows`), and its
    children ids."""
    primitive: dict[str, Any] = _unstructure_pointer(pointer)
    children: list[str] = primitive.pop("children")
    return primitive, children


class InstanceDocuments:
    """What this process stored of the instances it wrote last, to write the next write of
    each from what changed (see the module docstring). Not thread-safe: use it from one
    thread (the event loop's)."""

    def __init__(
        self,
        *,
        verify: bool = False,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_pointers: int = DEFAULT_MAX_POINTERS,
    ) -> None:
        self.verify = verify
        self.max_entries = max_entries
        self.max_pointers = max_pointers
        self._entries: OrderedDict[str, _Kept] = OrderedDict()
        self._pointers = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, workflow_id: object) -> bool:
        """Whether something is kept for ``workflow_id``."""
        return workflow_id in self._entries

    @property
    def pointers(self) -> int:
        """Pointers kept track of over all instances."""
        return self._pointers

    def kept(self) -> list[str]:
        """The ids of the instances kept, the least recently written first."""
        return list(self._entries)

    def kept_revision(self, workflow_id: str) -> int | None:
        """The revision kept for ``workflow_id`` (``None``: nothing is kept)."""
        entry = self._entries.get(workflow_id)
        return None if entry is None else entry.revision

    def kept_pointers(self, workflow_id: str) -> int:
        """How many pointers of ``workflow_id`` are kept track of (0: nothing is kept)."""
        entry = self._entries.get(workflow_id)
        return 0 if entry is None else len(entry.counts)

    def encode(
        self,
        instance: WorkflowInstance,
        revision: int,
        changed: Collection[str] | None = None,
    ) -> Written:
        """The write of ``instance`` as ``revision``: from what is kept for
        ``instance.revision`` when there is some and ``changed`` is given (then only the
        pointers in ``changed`` and new ones are stored), else every row. Nothing is kept
        yet (see :meth:`remember`)."""
        pointers = instance.pointers
        previous = self._entries.get(instance.id)
        indices: list[int] | None = None
        if previous is not None and previous.revision == instance.revision:
            indices = self._changed_indices(pointers, previous, changed)
        head, same_head, document = _head_of(instance, previous, revision)
        runnable = instance.status == _RUNNABLE
        if previous is None or indices is None:
            return self._full(instance, revision, document, head, runnable)
        counts = previous.counts
        stored = len(counts)
        pointer_rows: list[tuple[int, str]] = []
        child_rows: list[tuple[int, int, str]] = []
        reset: list[int] = []
        updates: list[tuple[int, str, int, bool]] = []
        texts = previous.texts[:] if previous.texts is not None else None
        kids = previous.children[:] if previous.children is not None else None
        if self.verify:
            self._verify(pointers, previous, indices, changed)
        for index in (*indices, *range(stored, len(pointers))):
            pointer = pointers[index]
            text, children = pointer_row(pointer)
            pointer_rows.append((index, text))
            known = counts[index] if index < stored else 0
            count = len(children)
            if count < known:
                reset.append(index)
                known = 0
            if count > known:
                # Only then: most pointers a write stores got no child (a generator each
                # would cost more than the rest of this).
                child_rows.extend((index, i, children[i]) for i in range(known, count))
            updates.append((index, pointer.id, count, pointer.active))
            if texts is not None and kids is not None:
                if index < stored:
                    texts[index] = text
                    kids[index] = list(children)
                else:
                    texts.append(text)
                    kids.append(list(children))
        return Written(
            revision=revision,
            document=document,
            status=head.status,
            head=head,
            # ``indices`` is known only from the revision kept: what is stored is that.
            same_head=same_head,
            full=False,
            pointer_rows=pointer_rows,
            child_rows=child_rows,
            reset_children=reset,
            positions=previous.positions,
            counts=counts,
            active=previous.active,
            updates=updates,
            texts=texts,
            children=kids,
            runnable=runnable,
        )

    def kept_live(self, workflow_id: str) -> tuple[int, list[int], list[int]] | None:
        """The revision kept for ``workflow_id``, the positions of its active pointers then,
        in order, and the child count stored for each (``None``: nothing is kept, so which
        are active is not known)."""
        entry = self._entries.get(workflow_id)
        if entry is None:
            return None
        positions = sorted(entry.active)
        counts = entry.counts
        return entry.revision, positions, [counts[i] for i in positions]

    def encode_live(
        self, instance: WorkflowInstance, revision: int, write: PointerWrite
    ) -> Written:
        """The write of a live part of ``instance`` as ``revision``: its head and the
        pointers ``write`` names by position (``instance.pointers`` holds only some). With
        what is kept for ``instance.revision``, only the child ids appended are stored;
        without, the named pointers' child ids are all stored again, from
        ``write.children_start`` on (and nothing is kept after the write: the positions of
        the others are not known)."""
        previous = self._entries.get(instance.id)
        if previous is not None and previous.revision != instance.revision:
            previous = None
        head, same_head, document = _head_of(instance, previous, revision)
        stored = write.stored_pointers
        if previous is not None and len(previous.counts) != stored:
            raise ValueError(
                f"pointer_write.stored_pointers is {stored}, but {len(previous.counts)} "
                "pointers are stored"
            )
        pointer_rows: list[tuple[int, str]] = []
        child_rows: list[tuple[int, int, str]] = []
        reset: list[int] = []
        updates: list[tuple[int, str, int, bool]] = []
        trim: list[tuple[int, int]] = []
        starts = write.children_start
        # Each named pointer encoded once: (position, text, child ids, first id's index).
        encoded: list[tuple[int, str, list[str], int]] = []
        for index, pointer in (*write.changed, *enumerate(write.added, stored)):
            text, children = pointer_row(pointer)
            # ``children`` holds the ids from ``start`` on (a live part's last ids).
            start = starts.get(pointer.id, 0) if starts and index < stored else 0
            encoded.append((index, text, children, start))
            pointer_rows.append((index, text))
            end = start + len(children)
            if index >= stored:
                known = 0
            elif previous is not None and previous.positions.get(pointer.id) == index:
                known = previous.counts[index]
                if start and not start <= known <= end:
                    raise ValueError(
                        f"pointer {pointer.id}: children from {start} on do not hold the "
                        f"{known} stored ids"
                    )
            elif start:
                trim.append((index, start))
                known = start
            else:
                reset.append(index)
                known = 0
            if end < known:
                reset.append(index)
                known = 0
            if end > known:
                child_rows.extend((index, i, children[i - start]) for i in range(known, end))
            updates.append((index, pointer.id, end, pointer.active))
        runnable = instance.status == _RUNNABLE
        if previous is None:
            # Not kept after the write (see ``remember``): an empty record of it will do.
            return Written(
                revision=revision,
                document=document,
                status=head.status,
                head=head,
                full=False,
                pointer_rows=pointer_rows,
                child_rows=child_rows,
                reset_children=reset,
                trim_children=trim,
                positions={},
                counts=[],
                active=set(),
                updates=[],
                texts=None,
                children=None,
                runnable=False,
            )
        texts = kids = None
        if previous.texts is not None and previous.children is not None:
            # ``verify``: kept as stored, to check later writes against.
            texts, kids = previous.texts[:], previous.children[:]
            for index, text, children, start in encoded:
                if index < stored:
                    texts[index], kids[index] = text, [*kids[index][:start], *children]
                else:
                    texts.append(text)
                    kids.append(list(children))
        return Written(
            revision=revision,
            document=document,
            status=head.status,
            head=head,
            same_head=same_head,
            full=False,
            pointer_rows=pointer_rows,
            child_rows=child_rows,
            reset_children=reset,
            trim_children=trim,
            positions=previous.positions,
            counts=previous.counts,
            active=previous.active,
            updates=updates,
            texts=texts,
            children=kids,
            runnable=runnable,
        )

    def _full(
        self,
        instance: WorkflowInstance,
        revision: int,
        document: str,
        head: _Head,
        runnable: bool,
    ) -> Written:
        pointer_rows: list[tuple[int, str]] = []
        child_rows: list[tuple[int, int, str]] = []
        counts: list[int] = []
        texts: list[str] = []
        kids: list[list[str]] = []
        for index, pointer in enumerate(instance.pointers):
            text, children = pointer_row(pointer)
            pointer_rows.append((index, text))
            child_rows.extend((index, i, child) for i, child in enumerate(children))
            counts.append(len(children))
            if self.verify:
                texts.append(text)
                kids.append(list(children))
        positions: dict[str, int] = {}
        active: set[int] = set()
        for index, pointer in enumerate(instance.pointers):
            positions.setdefault(pointer.id, index)
            if pointer.active:
                active.add(index)
        return Written(
            revision=revision,
            document=document,
            status=head.status,
            head=head,
            full=True,
            pointer_rows=pointer_rows,
            child_rows=child_rows,
            reset_children=[],
            positions=positions,
            counts=counts,
            active=active,
            updates=[],
            texts=texts if self.verify else None,
            children=kids if self.verify else None,
            runnable=runnable,
        )

    def _changed_indices(
        self,
        pointers: list[ExecutionPointer],
        previous: _Kept,
        changed: Collection[str] | None,
    ) -> list[int] | None:
        """Positions among the stored pointers of those to store again, or ``None`` when
        what is kept cannot be used (store them all)."""
        stored = len(previous.counts)
        if changed is None or len(pointers) < stored:
            return None  # anything may have changed, or pointers went (the engine never does)
        # Pointer ids are random: the same first and last ids mean this is the instance kept
        # (not one of the same id stored again after a purge).
        positions = previous.positions
        last = stored - 1
        if stored and (
            positions.get(pointers[0].id) != 0 or positions.get(pointers[last].id) != last
        ):
            return None
        indices: list[int] = []
        for pointer_id in changed:
            index = positions.get(pointer_id)
            if index is None or index >= stored:
                continue  # new: stored with the others after the kept ones
            if pointers[index].id != pointer_id:
                return None  # moved (the engine never does that)
            indices.append(index)
        return indices

    def _verify(
        self,
        pointers: list[ExecutionPointer],
        previous: _Kept,
        indices: list[int],
        changed: Collection[str] | None,
    ) -> None:
        texts, kids = previous.texts, previous.children
        if texts is None or kids is None:
            return
        named = set(indices)
        unnamed: list[str] = []
        for index, text in enumerate(texts):
            now, children = pointer_row(pointers[index])
            if index in named:
                if children[: len(kids[index])] != kids[index]:
                    raise AssertionError(
                        f"workflow pointer {pointers[index].id}: its children were changed, "
                        "not only appended to"
                    )
            elif now != text or children != kids[index]:
                unnamed.append(pointers[index].id)
        if unnamed:
            raise AssertionError(
                f"workflow pointers {sorted(unnamed)} changed but are not in "
                f"changed_pointers {sorted(changed or ())}"
            )

    def remember(self, workflow_id: str, written: Written) -> None:
        """Keep ``written`` as what is stored for ``workflow_id`` (after a successful write).
        An instance that is not runnable any more is dropped instead: it is rarely written
        again. An entry of a later revision is kept as it is (a write that finished while
        this one's caller waited)."""
        current = self._entries.get(workflow_id)
        if current is not None and current.revision > written.revision:
            return
        self.forget(workflow_id)
        counts = written.counts
        positions = written.positions
        active = written.active
        for index, pointer_id, count, is_active in written.updates:
            if index < len(counts):
                counts[index] = count
            else:
                counts.append(count)
                positions.setdefault(pointer_id, index)
            if is_active:
                active.add(index)
            else:
                active.discard(index)
        size = len(counts)
        if not written.runnable or size > self.max_pointers:
            return
        self._entries[workflow_id] = _Kept(
            written.revision,
            written.head,
            positions,
            counts,
            active,
            written.texts,
            written.children,
        )
        self._pointers += size
        while len(self._entries) > self.max_entries or self._pointers > self.max_pointers:
            _, oldest = self._entries.popitem(last=False)
            self._pointers -= len(oldest.counts)

    def forget(self, workflow_id: str) -> None:
        """Drop what is kept for ``workflow_id`` (a write failed, or it is not stored any more)."""
        entry = self._entries.pop(workflow_id, None)
        if entry is not None:
            self._pointers -= len(entry.counts)

    def clear(self) -> None:
        """Drop everything kept."""
        self._entries.clear()
        self._pointers = 0
