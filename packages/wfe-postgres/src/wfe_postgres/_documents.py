"""Workflow instances as a head row, one row per pointer and one per child id (internal).

An instance is stored as its *head* (``workflows.document``: the instance's JSON with
``"pointers":[]``), one ``pointers`` row per pointer (its JSON without ``children``, by
position) and one ``pointer_children`` row per child id. The executor writes after every step
naming the pointers it changed (``changed_pointers``); :class:`InstanceRows` keeps, for each
instance this process wrote last, each pointer's position and how many child ids are stored,
so the next write from that revision stores only the named and new pointers and the child ids
appended since: a step costs the same to store at step 10,000 as at step 1.

What is kept is used only for the revision it was written as; any other write (no
``changed_pointers``, a revision written elsewhere, ids that moved) stores every row. The
caller drops what is kept for an instance when a write fails.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.models import ExecutionPointer, WorkflowInstance, WorkflowStatus
from wfe_core.serialization import converter, to_primitive

if TYPE_CHECKING:
    from collections.abc import Collection

    from wfe_core.providers import PointerWrite

__all__ = ["InstanceRows", "Write", "dumps", "head_document"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: Compact JSON text (read back only by this provider).
dumps = _encoder.encode

_unstructure_pointer = converter.get_unstructure_hook(ExecutionPointer)
_RUNNABLE = WorkflowStatus.RUNNABLE

#: Instances kept at most (the least recently written go first).
MAX_ENTRIES = 4096


def head_document(instance: WorkflowInstance, revision: int) -> str:
    """The instance's JSON without its pointers, as ``revision``."""
    pointers = instance.pointers
    # Without copying the instance: nothing awaits in between.
    instance.pointers = []
    try:
        head: dict[str, Any] = to_primitive(instance)
    finally:
        instance.pointers = pointers
    head["revision"] = revision
    return dumps(head)


def _encode_pointer(pointer: ExecutionPointer) -> tuple[str, list[str]]:
    primitive: dict[str, Any] = _unstructure_pointer(pointer)
    children: list[str] = primitive.pop("children")
    return dumps(primitive), children


@attrs.define(eq=False)
class _Kept:
    revision: int
    positions: dict[str, int]
    counts: list[int]
    #: The positions of the active pointers (what a live part reads).
    active: set[int] = attrs.Factory(set)


@attrs.define(eq=False)
class Write:
    """The rows one write stores."""

    revision: int
    document: str
    #: Every row again (the stored pointer and child rows replaced), or only those below.
    full: bool
    pointer_count: int
    positions: list[int]
    texts: list[str]
    #: ``(position, index, child id)`` columns of the child rows to insert.
    child_positions: list[int]
    child_indices: list[int]
    child_ids: list[str]
    # What to keep once stored.
    kept: _Kept | None
    #: ``(position, pointer id, child count, active)`` of each pointer written.
    updates: list[tuple[int, str, int, bool]]
    runnable: bool


class InstanceRows:
    """What this process stored of the instances it wrote last (see the module docstring).
    Used from one event loop."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def encode(
        self,
        instance: WorkflowInstance,
        revision: int,
        changed: Collection[str] | None = None,
    ) -> Write:
        """The rows of ``instance`` written as ``revision``: only the changed and new ones
        when what is kept is for ``instance.revision`` and ``changed`` is given."""
        pointers = instance.pointers
        document = head_document(instance, revision)
        runnable = instance.status == _RUNNABLE
        kept = self._entries.get(instance.id)
        indices = None
        if kept is not None and kept.revision == instance.revision and changed is not None:
            indices = self._changed_indices(pointers, kept, changed)
        positions: list[int] = []
        texts: list[str] = []
        child_positions: list[int] = []
        child_indices: list[int] = []
        child_ids: list[str] = []
        updates: list[tuple[int, str, int, bool]] = []
        if kept is None or indices is None:
            for index, pointer in enumerate(pointers):
                text, children = _encode_pointer(pointer)
                positions.append(index)
                texts.append(text)
                for i, child in enumerate(children):
                    child_positions.append(index)
                    child_indices.append(i)
                    child_ids.append(child)
                updates.append((index, pointer.id, len(children), pointer.active))
            return Write(
                revision,
                document,
                True,
                len(pointers),
                positions,
                texts,
                child_positions,
                child_indices,
                child_ids,
                None,
                updates,
                runnable,
            )
        counts = kept.counts
        stored = len(counts)
        for index in (*indices, *range(stored, len(pointers))):
            pointer = pointers[index]
            text, children = _encode_pointer(pointer)
            positions.append(index)
            texts.append(text)
            known = counts[index] if index < stored else 0
            for i in range(known, len(children)):
                child_positions.append(index)
                child_indices.append(i)
                child_ids.append(children[i])
            updates.append((index, pointer.id, len(children), pointer.active))
        return Write(
            revision,
            document,
            False,
            len(pointers),
            positions,
            texts,
            child_positions,
            child_indices,
            child_ids,
            kept,
            updates,
            runnable,
        )

    def kept_live(self, workflow_id: str) -> tuple[int, list[int], list[int]] | None:
        """The revision kept for ``workflow_id``, the positions of its active pointers then,
        in order, and the child count stored for each (``None``: nothing is kept)."""
        kept = self._entries.get(workflow_id)
        if kept is None:
            return None
        positions = sorted(kept.active)
        counts = kept.counts
        return kept.revision, positions, [counts[i] for i in positions]

    def encode_live(self, instance: WorkflowInstance, revision: int, write: PointerWrite) -> Write:
        """The rows of a live part of ``instance`` written as ``revision``: the pointers
        ``write`` names by position. The child ids appended since what is kept (for
        ``instance.revision``); without it, every child id the named pointers hold (from
        ``write.children_start`` on; stored again as they are: they only grow), and nothing
        is kept after."""
        kept = self._entries.get(instance.id)
        if kept is not None and kept.revision != instance.revision:
            kept = None
        stored = write.stored_pointers
        if kept is not None and len(kept.counts) != stored:
            raise ValueError(
                f"pointer_write.stored_pointers is {stored}, but {len(kept.counts)} "
                "pointers are stored"
            )
        positions: list[int] = []
        texts: list[str] = []
        child_positions: list[int] = []
        child_indices: list[int] = []
        child_ids: list[str] = []
        updates: list[tuple[int, str, int, bool]] = []
        starts = write.children_start
        for index, pointer in (*write.changed, *enumerate(write.added, stored)):
            text, children = _encode_pointer(pointer)
            positions.append(index)
            texts.append(text)
            # ``children`` holds the ids from ``start`` on (a live part's last ids).
            start = starts.get(pointer.id, 0) if starts and index < stored else 0
            end = start + len(children)
            known = start
            if kept is not None and index < stored and kept.positions.get(pointer.id) == index:
                count = kept.counts[index]
                if start and not start <= count <= end:
                    raise ValueError(
                        f"pointer {pointer.id}: children from {start} on do not hold the "
                        f"{count} stored ids"
                    )
                known = min(max(count, start), end)
            for i in range(known, end):
                child_positions.append(index)
                child_indices.append(i)
                child_ids.append(children[i - start])
            updates.append((index, pointer.id, end, pointer.active))
        return Write(
            revision,
            head_document(instance, revision),
            False,
            stored + len(write.added),
            positions,
            texts,
            child_positions,
            child_indices,
            child_ids,
            kept,
            updates,
            # Without what was kept, the other pointers' positions are not known: keep none.
            kept is not None and instance.status == _RUNNABLE,
        )

    @staticmethod
    def _changed_indices(
        pointers: list[ExecutionPointer], kept: _Kept, changed: Collection[str]
    ) -> list[int] | None:
        """Positions among the stored pointers to store again, or ``None`` when what is kept
        cannot be used (store every row)."""
        stored = len(kept.counts)
        if len(pointers) < stored:
            return None  # pointers went (the engine never does that)
        positions = kept.positions
        last = stored - 1
        # Pointer ids are random: the same first and last ids mean this is the instance kept
        # (not one of the same id stored again after a purge).
        if stored and (
            positions.get(pointers[0].id) != 0 or positions.get(pointers[last].id) != last
        ):
            return None
        indices: list[int] = []
        for pointer_id in changed:
            index = positions.get(pointer_id)
            if index is None or index >= stored:
                continue  # new: stored with the others past the kept ones
            if pointers[index].id != pointer_id:
                return None
            if len(pointers[index].children) < kept.counts[index]:
                return None  # children went (the engine only appends): store every row
            indices.append(index)
        return indices

    def remember(self, workflow_id: str, write: Write) -> None:
        """Keep what ``write`` stored (after it succeeded). An instance that is not runnable
        any more is dropped instead: it is rarely written again."""
        current = self._entries.pop(workflow_id, None)
        if current is not None and current.revision > write.revision:
            self._entries[workflow_id] = current
            return
        if not write.runnable:
            return
        kept = write.kept
        if kept is None:
            kept = _Kept(write.revision, {}, [])
        kept.revision = write.revision
        counts, positions, active = kept.counts, kept.positions, kept.active
        for index, pointer_id, count, is_active in write.updates:
            if index < len(counts):
                counts[index] = count
            else:
                counts.append(count)
                positions.setdefault(pointer_id, index)
            if is_active:
                active.add(index)
            else:
                active.discard(index)
        self._entries[workflow_id] = kept
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, workflow_id: str) -> None:
        self._entries.pop(workflow_id, None)
