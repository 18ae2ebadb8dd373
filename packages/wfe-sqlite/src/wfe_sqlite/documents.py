"""Workflow instance documents encoded from the pieces that changed.

An instance is stored as one JSON document, and the executor writes it after every step. Most
of that document is its pointers, and a step changes one or two of them, so encoding the
whole instance each time is mostly wasted work on the event loop's thread.

:class:`InstanceDocuments` keeps, for each instance this process wrote last, the JSON text of
each pointer as it wrote it. The next write of that instance from that revision encodes the
instance without its pointers, and only the pointers named in ``changed_pointers`` (and new
ones) again, and splices the document together from the texts. The result is the very text a
full encode gives (``dumps(to_primitive(instance))``): the JSON encoder writes a list or an
object as its items joined by ``,`` between brackets, so joining the items' own texts is the
same text.

A kept text is used only for the revision it was written as: a write by any other process or
provider moves the stored revision on, so the instance read back never matches what is kept,
and a write from a stale revision is refused by the database before anything is stored. The
caller drops what it keeps for an instance when a write fails, since it may then not know
what is stored.

With ``verify`` on (``WFE_VERIFY_POINTER_CHANGES=1``, which the test suites set), every
document is compared with a full encode, and a pointer that changed without being named
raises :class:`AssertionError`.
"""

from __future__ import annotations

import json
import operator
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import attrs

from wfe_core.models import ExecutionPointer, WorkflowInstance, WorkflowStatus
from wfe_core.serialization import converter, to_primitive

if TYPE_CHECKING:
    from collections.abc import Callable, Collection


__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_ENTRIES", "InstanceDocuments", "Written", "dumps"]

# Compact, and unicode kept as it is: the text is read back only by this provider.
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _make_dumps() -> Callable[[Any], str]:
    """``_encoder.encode``, without what it does again for every call: it builds its C
    encoder (and a closure) each time, which costs about as much as encoding a pointer's few
    fields. The C encoder is built once here with the arguments ``encode`` gives it (no
    check for circular references: what the converter gives is fresh, and a cycle would stop
    it first); without the C accelerator, ``encode`` is used as it is."""
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - CPython has it
        return _encoder.encode
    encode = make_encoder(
        None,
        _encoder.default,
        json.encoder.encode_basestring,
        None,
        _encoder.key_separator,
        _encoder.item_separator,
        _encoder.sort_keys,
        _encoder.skipkeys,
        _encoder.allow_nan,
    )
    join = "".join

    def dumps(value: Any) -> str:
        return join(encode(value, 0))

    return dumps


#: ``value`` as JSON text, as ``_encoder.encode`` writes it.
dumps = _make_dumps()

#: How many instances' texts are kept at most (the least recently written go first): the
#: instances a host runs at once, with room to spare.
DEFAULT_MAX_ENTRIES = 4096
#: How many characters of documents are kept at most, over all instances (a plain step's
#: pointer is about 600 characters): a bound on the memory kept when instances grow long.
DEFAULT_MAX_CHARS = 32_000_000

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
    data goes after the first, the pointers' texts after the second, the revision after the
    third."""

    #: The fields it was made from (see ``_head_state``).
    state: tuple[Any, ...]
    pieces: tuple[str, str, str, str]
    status: str


@attrs.define(eq=False)
class Written:
    """An instance document as encoded for one revision, with the pieces it was made of."""

    revision: int
    #: The whole document.
    document: str
    #: The instance's ``status`` as stored (the status column).
    status: str
    head: _Head
    #: Each pointer's text, in order.
    texts: list[str]
    #: Each pointer's position by id. What is kept of one instance shares it and only adds
    #: to it, so a position may be past ``texts`` (read it with care).
    positions: dict[str, int]
    #: Whether the instance may be written again (the others are not worth keeping).
    runnable: bool


@attrs.define(eq=False)
class _Kept:
    """What is kept of a :class:`Written` once stored (its pieces, not its document)."""

    revision: int
    head: _Head
    texts: list[str]
    positions: dict[str, int]
    #: The document's length (what the cap counts).
    size: int


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


def _document(head: _Head, data: str, texts: list[str], revision: int) -> str:
    """The document of ``head`` with ``data`` (its text), the pointer ``texts`` and
    ``revision`` in their places."""
    first, second, third, last = head.pieces
    return "".join((first, data, second, ",".join(texts), third, str(revision), last))


# The converter's own hook, called without looking it up for each pointer.
_unstructure_pointer = converter.get_unstructure_hook(ExecutionPointer)


def _encode_pointer(pointer: ExecutionPointer) -> str:
    return dumps(_unstructure_pointer(pointer))


class InstanceDocuments:
    """The documents of the instances this process wrote last, to encode the next write of
    each from what changed (see the module docstring). Not thread-safe: use it from one
    thread (the event loop's)."""

    def __init__(
        self,
        *,
        verify: bool = False,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.verify = verify
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._entries: OrderedDict[str, _Kept] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        """Characters kept over all instances."""
        return self._chars

    def encode(
        self,
        instance: WorkflowInstance,
        revision: int,
        changed: Collection[str] | None = None,
    ) -> Written:
        """``instance`` encoded as ``revision``, from the texts kept for ``instance.revision``
        when there are some and ``changed`` is given; then only the pointers in ``changed``
        and new ones are encoded again. Nothing is kept yet (see :meth:`remember`)."""
        pointers = instance.pointers
        previous = self._entries.get(instance.id)
        indices: list[int] | None = None
        if previous is not None and previous.revision == instance.revision:
            indices = self._changed_indices(pointers, previous, changed)
        state = _head_state(instance)
        head = previous.head if previous is not None else None
        # The head's fields are immutable values: the same objects encode the same.
        if head is None or not all(map(operator.is_, state, head.state)):
            head = _new_head(instance, state)
        if previous is None or indices is None:
            texts = [_encode_pointer(p) for p in pointers]
            positions = {p.id: i for i, p in enumerate(pointers)}
        else:
            stored = len(previous.texts)
            texts = previous.texts[:]
            for index in indices:
                texts[index] = _encode_pointer(pointers[index])
            positions = previous.positions
            for index in range(stored, len(pointers)):
                pointer = pointers[index]
                texts.append(_encode_pointer(pointer))
                positions.setdefault(pointer.id, index)
            if self.verify:
                self._verify(pointers, previous, indices, changed)
        written = Written(
            revision=revision,
            document=_document(head, dumps(to_primitive(instance.data)), texts, revision),
            status=head.status,
            head=head,
            texts=texts,
            positions=positions,
            runnable=instance.status == _RUNNABLE,
        )
        if self.verify:
            full = to_primitive(instance)
            full["revision"] = revision
            if written.document != dumps(full):
                raise AssertionError(
                    f"workflow {instance.id}: the spliced document differs from a full encode"
                )
        return written

    def _changed_indices(
        self,
        pointers: list[ExecutionPointer],
        previous: _Kept,
        changed: Collection[str] | None,
    ) -> list[int] | None:
        """Positions among the kept texts of the pointers to encode again, or ``None`` when
        the kept texts cannot be used (encode them all)."""
        stored = len(previous.texts)
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
                continue  # new: encoded with the others after the kept ones
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
        named = set(indices)
        unnamed = [
            pointers[index].id
            for index, text in enumerate(previous.texts)
            if index not in named and _encode_pointer(pointers[index]) != text
        ]
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
        size = len(written.document)
        if not written.runnable or size > self.max_chars:
            return
        self._entries[workflow_id] = _Kept(
            written.revision, written.head, written.texts, written.positions, size
        )
        self._chars += size
        while len(self._entries) > self.max_entries or self._chars > self.max_chars:
            _, oldest = self._entries.popitem(last=False)
            self._chars -= oldest.size

    def forget(self, workflow_id: str) -> None:
        """Drop what is kept for ``workflow_id`` (a write failed, or it is not stored any more)."""
        entry = self._entries.pop(workflow_id, None)
        if entry is not None:
            self._chars -= entry.size

    def clear(self) -> None:
        """Drop everything kept."""
        self._entries.clear()
        self._chars = 0
