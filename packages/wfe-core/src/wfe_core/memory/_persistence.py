"""In-memory persistence: the reference implementation of :class:`PersistenceProvider`.

Everything is kept as a database would read it back (:mod:`wfe_core.memory._values`): events,
subscriptions and errors as JSON text, an instance as plain JSON data without its pointers
plus one snapshot per pointer, next to the few columns the queries need. Reads build fresh
objects, so callers never share anything with the store, and ``data`` comes back unstructured
exactly as a database provider returns it.

A write from the executor names the pointers it changed (``changed_pointers``) and only those
are kept again, so persisting a long workflow after each step costs the same at step 1,000 as
at step 1. A write without that list keeps again the pointers whose fields differ (``!=``) from
their snapshot. (A field changed to an equal value of another type, ``1`` to ``True``, counts
as unchanged.)

``MemoryPersistence(verify_changes=True)`` (or ``WFE_VERIFY_POINTER_CHANGES=1``) compares
every pointer even when the list is given and raises :class:`AssertionError` naming a pointer
that changed without being listed: the test suites run with it, so a list the executor gets
wrong fails a test instead of losing a change.

The shortcuts above (pointers kept again only when named or changed, ``children`` lists shared,
an unchanged head kept, values copied instead of encoded, an index of the scheduled instances)
sit behind one switch: ``MemoryPersistence(fast=False)`` (or ``WFE_MEMORY_FAST=0`` in the
environment, read when the store is made) turns them all off. Every write then keeps the whole
instance as it reads back from JSON text and every scheduler query scans every instance: the
same answers, slower. The test suites run both ways, so a shortcut that changes an answer fails.
"""

from __future__ import annotations

import itertools
import json
import logging
import operator
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from anyio.lowlevel import checkpoint, checkpoint_if_cancelled

from wfe_core.errors import (
    ConcurrencyError,
    EventNotFoundError,
    StaleLeaseError,
    SubscriptionNotFoundError,
    WorkflowNotFoundError,
)
from wfe_core.memory._values import (
    copy_pointer,
    dumps,
    fresh,
    head_document,
    plain_equal,
    pointer_state,
    snapshot_pointer,
    utc,
    via_json,
)
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    Page,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.providers import capabilities as cap
from wfe_core.providers._persistence import (
    LivePart,
    PersistenceProvider,
    PointerWrite,
    refuse_leased_writes,
)
from wfe_core.serialization import from_primitive, to_primitive

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

    from wfe_core.providers._lock import Lease, LeaseRequest

__all__ = ["MemoryPersistence"]

# Named, not __name__: the logger name is what users configure, and the module may move.
logger = logging.getLogger("wfe_core.memory.persistence")

T = TypeVar("T")


#: The environment switch of ``verify_changes`` (see the module docstring).
VERIFY_CHANGES_ENV = "WFE_VERIFY_POINTER_CHANGES"
#: The environment switch of ``fast`` (``0`` turns the shortcuts off; see the module docstring).
FAST_ENV = "WFE_MEMORY_FAST"


def _encode(value: Any) -> str:
    return dumps(to_primitive(value))


def _decode(document: str, cls: type[T]) -> T:
    return from_primitive(json.loads(document), cls)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


#: The instance's fields kept in its head but its data and revision (all of them immutable).
_head_state = operator.attrgetter(
    *(
        field.name
        for field in attrs.fields(WorkflowInstance)
        if field.name not in ("pointers", "data", "revision")
    )
)


@attrs.frozen
class _Head:
    """The instance without its pointers and revision, and the columns the queries use."""

    #: Plain JSON data of the store's own.
    document: dict[str, Any]
    #: The fields it was made from (``_head_state``), to see whether a write changed any.
    state: tuple[Any, ...]
    status: WorkflowStatus
    definition_id: str
    reference: str | None
    next_execution: datetime | None
    create_time: datetime
    complete_time: datetime | None


def _changed_head(instance: WorkflowInstance, previous: _Head) -> _Head | None:
    """The instance's new head, or ``None`` when ``previous`` is still right (a sequence of
    steps changes only pointers)."""
    state = _head_state(instance)
    if state == previous.state and plain_equal(instance.data, previous.document["data"]):
        return None
    return _head(instance, state)


def _head(instance: WorkflowInstance, state: tuple[Any, ...], *, fast: bool = True) -> _Head:
    return _Head(
        document=head_document(instance) if fast else _head_via_json(instance),
        state=state,
        status=WorkflowStatus(instance.status),
        definition_id=instance.definition_id,
        reference=instance.reference,
        next_execution=_utc_or_none(instance.next_execution),
        create_time=utc(instance.create_time),
        complete_time=_utc_or_none(instance.complete_time),
    )


def _head_via_json(instance: WorkflowInstance) -> dict[str, Any]:
    """The head as it reads back from the JSON text of the whole instance (no shortcuts)."""
    head: dict[str, Any] = json.loads(dumps(to_primitive(instance)))
    del head["pointers"]
    del head["revision"]
    return head


def _pointer_via_json(pointer: ExecutionPointer) -> tuple[Any, ...]:
    """The pointer's snapshot as it reads back from its JSON text (no shortcuts)."""
    return pointer_state(via_json(pointer, ExecutionPointer))


#: Where ``children`` and ``active`` sit in a pointer's snapshot (``values.pointer_state``
#: order).
_CHILDREN = [field.name for field in attrs.fields(ExecutionPointer)].index("children")
_ACTIVE = [field.name for field in attrs.fields(ExecutionPointer)].index("active")
_ID = [field.name for field in attrs.fields(ExecutionPointer)].index("id")
#: Below this many children a changed pointer's list is simply copied again.
_SHARE_CHILDREN_FROM = 8
#: How many of an active pointer's last child ids a live part holds (the least the
#: contract allows: the engine's paths that need more are exercised by every test).
_LIVE_CHILDREN = 1


def _grown_snapshot(
    pointer: ExecutionPointer, stored: tuple[Any, ...], start: int = 0
) -> tuple[tuple[Any, ...], list[str]] | None:
    """The snapshot of a changed pointer that keeps its stored ``children`` list (and the new
    ids to append to it when the write is applied), or ``None`` to snapshot it in full.

    The engine only appends to ``children`` (the persistence contract), so a container that
    started its 10,000th branch costs the same to keep as one that started its first: the
    stored ids are not copied again. Only for writes that name their changed pointers (the
    executor's); the oracle (``verify_changes``) checks the stored ids are a prefix.
    ``start``: ``pointer.children`` holds the ids from that stored position on only (a live
    part's, see ``PointerWrite.children_start``); then it is never snapshot in full."""
    kept = stored[_CHILDREN]
    children = pointer.children
    if type(kept) is not list or type(children) is not list:
        return None
    known = len(kept)
    if start:
        if known < start or len(children) < known - start:
            raise ValueError(
                f"pointer {pointer.id}: children from {start} on do not hold the stored ones"
            )
        tail = children[known - start :]
        if not all(type(item) is str for item in tail):
            raise ValueError(f"pointer {pointer.id}: a child id is not a string")
    else:
        if known < _SHARE_CHILDREN_FROM or len(children) < known:
            return None
        tail = children[known:]
        if not all(type(item) is str for item in tail):
            return None
    pointer.children = []
    try:
        state = snapshot_pointer(pointer)
    finally:
        pointer.children = children
    return (*state[:_CHILDREN], kept, *state[_CHILDREN + 1 :]), tail


@attrs.define
class _PointerWrite:
    """The snapshots a write keeps, built before the row changes (see ``_InstanceRow.apply``)."""

    #: Start from no pointers (pointers were removed, or the row is new).
    reset: bool
    #: Stored positions kept again, and the snapshots to keep there.
    replaced: list[tuple[int, tuple[Any, ...]]]
    #: The snapshots of the pointers past the stored ones, in order.
    added: list[tuple[Any, ...]]
    #: The positions of the added pointers, by id (a repeated id keeps its first position).
    positions: dict[str, int]
    #: Stored ``children`` lists the replaced snapshots keep, and the ids to append to each.
    grown: list[tuple[list[str], list[str]]] = attrs.Factory(list)


@attrs.define
class _InstanceRow:
    """One stored instance. A write changes it in place (``apply``) instead of building a new
    row with a copy of every pointer's snapshot: a write costs the same at any length."""

    head: _Head
    #: Each pointer's fields as they read back (see ``values.snapshot_pointer``).
    pointer_states: list[tuple[Any, ...]]
    #: The position of each pointer by id.
    positions: dict[str, int]
    revision: int
    seq: int
    #: The highest fencing token a write carried (``None``: no write carried one yet).
    fence: int | None = None
    #: The positions of the active pointers (what :meth:`live_part` reads).
    active: set[int] = attrs.Factory(set)

    def instance(self) -> WorkflowInstance:
        """A fresh instance, sharing nothing with the row."""
        instance = self._head_instance()
        instance.pointers.extend(map(copy_pointer, self.pointer_states))
        return instance

    def live_part(self) -> LivePart:
        """A fresh instance with the active pointers only, and their positions; of a
        pointer's ``children``, the last id only (see ``LivePart.children_start``)."""
        instance = self._head_instance()
        states = self.pointer_states
        positions = sorted(self.active)
        starts: dict[str, int] = {}
        for index in positions:
            state = states[index]
            kids = state[_CHILDREN]
            if type(kids) is list and len(kids) > _LIVE_CHILDREN:
                start = len(kids) - _LIVE_CHILDREN
                starts[state[_ID]] = start
                state = (*state[:_CHILDREN], kids[start:], *state[_CHILDREN + 1 :])
            instance.pointers.append(copy_pointer(state))
        return LivePart(
            instance,
            len(states),
            {p.id: i for p, i in zip(instance.pointers, positions, strict=True)},
            children_start=starts,
        )

    def _head_instance(self) -> WorkflowInstance:
        document = fresh(self.head.document)
        document["revision"] = self.revision
        return from_primitive(document, WorkflowInstance)

    def apply(self, head: _Head | None, pointers: _PointerWrite, revision: int) -> None:
        """Take a write built in full beforehand: nothing here can fail, so a reader never
        sees a row half written (and nothing awaits)."""
        if head is not None:
            self.head = head
        if pointers.reset:
            self.pointer_states = []
            self.positions = {}
            self.active = set()
        states = self.pointer_states
        active = self.active
        for index, state in pointers.replaced:
            states[index] = state
            if state[_ACTIVE]:
                active.add(index)
            else:
                active.discard(index)
        for kept, tail in pointers.grown:
            kept.extend(tail)
        for index, state in enumerate(pointers.added, len(states)):
            if state[_ACTIVE]:
                active.add(index)
        states.extend(pointers.added)
        self.positions.update(pointers.positions)
        self.revision = revision


@attrs.define
class _EventRow:
    document: str
    name: str
    key: str
    time: datetime
    is_processed: bool
    seq: int


@attrs.define
class _SubscriptionRow:
    document: str
    workflow_id: str
    event_name: str
    event_key: str
    subscribe_as_of: datetime
    create_time: datetime
    terminated: bool
    seq: int


@attrs.define
class _ErrorRow:
    document: str
    time: datetime
    seq: int


class MemoryPersistence(PersistenceProvider):
    """Workflow instances, events, subscriptions and errors in this process's memory.

    Not durable: everything is lost when the process exits. Every method completes without
    awaiting between its checks and its writes, so each call is atomic with respect to other
    tasks (there is nothing to lock). Every method is a cancellation point, and all but
    :meth:`persist_workflow` let other tasks run first, as a call to a database would.
    """

    capabilities = frozenset({cap.FENCING, cap.EXTERNAL_WORK})

    def __init__(self, *, fast: bool | None = None, verify_changes: bool | None = None) -> None:
        #: Take the shortcuts (see the module docstring); ``False`` keeps every write whole.
        #: Default: on, unless ``WFE_MEMORY_FAST`` is set to ``0``.
        self.fast = os.environ.get(FAST_ENV, "1").strip() != "0" if fast is None else fast
        #: Check every ``changed_pointers`` list given to :meth:`persist_workflow` (slow; for
        #: tests). Default: whether ``WFE_VERIFY_POINTER_CHANGES`` is set to ``1``.
        self.verify_changes = (
            os.environ.get(VERIFY_CHANGES_ENV) == "1" if verify_changes is None else verify_changes
        )
        self._instances: dict[str, _InstanceRow] = {}
        #: The runnable instances with a due time: all the scheduler's queries look at, so
        #: they cost the same however many finished instances are stored.
        self._scheduled: dict[str, _InstanceRow] = {}
        self._events: dict[str, _EventRow] = {}
        #: The ids of the stored events of each (name, key), in the order stored: what a new
        #: subscription looks at (the fast path; without it, every event is scanned).
        self._topics: dict[tuple[str, str], list[str]] = {}
        self._subscriptions: dict[str, _SubscriptionRow] = {}
        self._errors: dict[str, list[_ErrorRow]] = {}
        # Insertion order breaks ties between equal timestamps, so orders are stable.
        self._seq = itertools.count()

    # -- rows ------------------------------------------------------------------------------
    def _pointer_write(
        self,
        pointers: list[ExecutionPointer],
        previous: _InstanceRow | None = None,
        changed: Collection[str] | None = None,
    ) -> _PointerWrite:
        if not self.fast:
            return self._whole_pointer_write(pointers, previous, changed)
        count = len(pointers)
        if previous is None or count < len(previous.pointer_states):
            # New, or pointers were removed (the engine never does that): keep them all.
            reset = True
            replaced: list[tuple[int, tuple[Any, ...]]] = []
            known: dict[str, int] = {}
            stored = 0
        else:
            reset = False
            replaced = []
            grown: list[tuple[list[str], list[str]]] = []
            states = previous.pointer_states
            for index in self._changed_indices(pointers, previous, changed):
                self._keep_again(
                    index,
                    pointers[index],
                    states[index],
                    replaced,
                    grown,
                    share=changed is not None,
                )
            known = previous.positions
            stored = len(previous.pointer_states)
        added: list[tuple[Any, ...]] = []
        positions: dict[str, int] = {}
        for index in range(stored, count):
            pointer = pointers[index]
            added.append(snapshot_pointer(pointer))
            if pointer.id not in known and pointer.id not in positions:
                positions[pointer.id] = index
        if reset:
            return _PointerWrite(reset, replaced, added, positions)
        return _PointerWrite(reset, replaced, added, positions, grown)

    def _keep_again(
        self,
        index: int,
        pointer: ExecutionPointer,
        stored: tuple[Any, ...],
        replaced: list[tuple[int, tuple[Any, ...]]],
        grown: list[tuple[list[str], list[str]]],
        *,
        share: bool,
        start: int = 0,
    ) -> None:
        """Add the snapshot of changed ``pointer`` (stored at ``index``) to ``replaced``,
        sharing its stored ``children`` list (the ids to append go to ``grown``) when
        ``share`` and the list is long enough, or holds only the ids from ``start`` on (see
        ``_grown_snapshot``)."""
        shared = _grown_snapshot(pointer, stored, start) if share else None
        if shared is None:
            replaced.append((index, snapshot_pointer(pointer)))
            return
        state, tail = shared
        kept = state[_CHILDREN]
        if self.verify_changes and pointer.children[: len(kept) - start] != kept[start:]:
            raise AssertionError(
                f"workflow pointer {pointer.id}: children were changed, not only appended to"
            )
        replaced.append((index, state))
        grown.append((kept, tail))

    def _live_pointer_write(self, write: PointerWrite, previous: _InstanceRow) -> _PointerWrite:
        """The snapshots of a write of a live part: the pointers it names, by position."""
        states = previous.pointer_states
        stored = len(states)
        if write.stored_pointers != stored:
            raise ValueError(
                f"pointer_write.stored_pointers is {write.stored_pointers}, but {stored} "
                "pointers are stored"
            )
        replaced: list[tuple[int, tuple[Any, ...]]] = []
        grown: list[tuple[list[str], list[str]]] = []
        starts = write.children_start
        for index, pointer in write.changed:
            if not 0 <= index < stored or states[index][_ID] != pointer.id:
                raise ValueError(f"pointer {pointer.id} is not stored at position {index}")
            start = starts.get(pointer.id, 0) if starts else 0
            self._keep_again(
                index, pointer, states[index], replaced, grown, share=True, start=start
            )
        added = list(map(snapshot_pointer, write.added))
        positions: dict[str, int] = {}
        for index, pointer in enumerate(write.added, stored):
            if pointer.id not in previous.positions:
                positions.setdefault(pointer.id, index)
        return _PointerWrite(False, replaced, added, positions, grown)

    def _whole_pointer_write(
        self,
        pointers: list[ExecutionPointer],
        previous: _InstanceRow | None,
        changed: Collection[str] | None,
    ) -> _PointerWrite:
        """Every pointer kept again through JSON text (``fast=False``)."""
        checkable = previous is not None and len(pointers) >= len(previous.pointer_states)
        if self.verify_changes and changed is not None and previous is not None and checkable:
            self._changed_indices(pointers, previous, changed)  # raises on an unlisted change
        positions: dict[str, int] = {}
        for index, pointer in enumerate(pointers):
            positions.setdefault(pointer.id, index)
        return _PointerWrite(True, [], list(map(_pointer_via_json, pointers)), positions)

    def _changed_indices(
        self,
        pointers: list[ExecutionPointer],
        previous: _InstanceRow,
        changed: Collection[str] | None,
    ) -> list[int]:
        """Positions among the stored pointers of those to encode again: the ones named in
        ``changed``, or, without it, the ones whose fields differ from the stored copy."""
        named: list[int] | None = None
        stored = len(previous.pointer_states)
        if changed is not None:
            named = []
            for pointer_id in changed:
                index = previous.positions.get(pointer_id)
                if index is None:
                    continue  # new: kept with the others after the stored ones
                if pointers[index].id != pointer_id:
                    named = None  # moved (the engine never does that): compare them all
                    break
                named.append(index)
        if named is not None and not self.verify_changes:
            return named
        differing = map(operator.ne, map(pointer_state, pointers), previous.pointer_states)
        found = list(itertools.compress(range(stored), differing))
        if named is not None:
            unnamed = [pointers[i].id for i in set(found).difference(named)]
            if unnamed:
                raise AssertionError(
                    f"workflow pointers {sorted(unnamed)} changed but are not in "
                    f"changed_pointers {sorted(changed or ())}"
                )
            return named
        return found

    def _schedule(self, workflow_id: str, row: _InstanceRow) -> None:
        """Keep ``_scheduled`` right after ``row``'s head changed."""
        if not self.fast:
            return  # no index: the queries scan every instance
        if row.head.status == WorkflowStatus.RUNNABLE and row.head.next_execution is not None:
            self._scheduled[workflow_id] = row
        else:
            self._scheduled.pop(workflow_id, None)

    def _runnable(self) -> dict[str, _InstanceRow]:
        """The runnable instances with a due time (the scheduler's queries look at these)."""
        if self.fast:
            return self._scheduled
        return {
            workflow_id: row
            for workflow_id, row in self._instances.items()
            if row.head.status == WorkflowStatus.RUNNABLE and row.head.next_execution is not None
        }

    def _subscription_row(self, subscription: EventSubscription, seq: int) -> _SubscriptionRow:
        return _SubscriptionRow(
            document=_encode(subscription),
            workflow_id=subscription.workflow_id,
            event_name=subscription.event_name,
            event_key=subscription.event_key,
            subscribe_as_of=utc(subscription.subscribe_as_of),
            create_time=utc(subscription.create_time),
            terminated=bool(subscription.terminated),
            seq=seq,
        )

    def _error_row(self, error: ExecutionError) -> tuple[str, _ErrorRow]:
        return error.workflow_id, _ErrorRow(_encode(error), utc(error.time), next(self._seq))

    # -- workflow instances ----------------------------------------------------------------
    async def create_workflow(
        self, instance: WorkflowInstance, *, lease: LeaseRequest | None = None
    ) -> Lease | None:
        """Store a new instance with revision 1 (set on ``instance`` too).

        Raises :class:`~wfe_core.errors.ConcurrencyError` when the id is already stored.
        """
        if lease is not None:
            raise refuse_leased_writes(self)
        await checkpoint()
        if instance.id in self._instances:
            raise ConcurrencyError(f"workflow {instance.id} already exists")
        head = _head(instance, _head_state(instance), fast=self.fast)
        row = _InstanceRow(head, [], {}, 1, next(self._seq))
        row.apply(None, self._pointer_write(instance.pointers), 1)
        self._instances[instance.id] = row
        self._schedule(instance.id, row)
        instance.revision = 1
        return None

    async def persist_workflow(
        self,
        instance: WorkflowInstance,
        *,
        subscriptions: Iterable[EventSubscription] = (),
        errors: Iterable[ExecutionError] = (),
        events: Iterable[Event] = (),
        changed_pointers: Collection[str] | None = None,
        fence: int | None = None,
        release: Lease | None = None,
        pointer_write: PointerWrite | None = None,
    ) -> None:
        """Write ``instance`` when its revision is the stored one and ``fence`` (when given)
        is not below the highest one accepted for it (else ``StaleLeaseError``), with its
        subscriptions (added, or replaced by id), errors (appended) and events (added; an id
        already stored refuses the write with ``ConcurrencyError``), all or nothing. Only the
        pointers in ``changed_pointers`` (and new ones) are kept again, when it is given.

        It does not yield to other tasks (the executor writes after every step, and lets
        others run now and then itself)."""
        if release is not None:
            raise refuse_leased_writes(self)
        await checkpoint_if_cancelled()
        current = self._instances.get(instance.id)
        if current is None:
            raise WorkflowNotFoundError(instance.id)
        if fence is not None and current.fence is not None and fence < current.fence:
            raise StaleLeaseError(
                f"workflow {instance.id}: fencing token {fence} is stale (a write under "
                f"token {current.fence} was accepted)"
            )
        if current.revision != instance.revision:
            raise ConcurrencyError(
                f"workflow {instance.id}: revision {instance.revision} is stale "
                f"(stored: {current.revision})"
            )
        # Build every row before writing any, so a value that fails to serialize stores nothing.
        if self.fast:
            head = _changed_head(instance, current.head)
        else:
            head = _head(instance, _head_state(instance), fast=False)
        if pointer_write is None:
            rows = self._pointer_write(instance.pointers, current, changed_pointers)
        else:
            rows = self._live_pointer_write(pointer_write, current)
        sub_rows = []
        for subscription in subscriptions:
            existing = self._subscriptions.get(subscription.id)
            seq = existing.seq if existing is not None else next(self._seq)
            sub_rows.append((subscription.id, self._subscription_row(subscription, seq)))
        error_rows = list(map(self._error_row, errors))
        event_rows: dict[str, _EventRow] = {}
        for event in events:
            if event.id in self._events or event.id in event_rows:
                raise ConcurrencyError(f"event {event.id} already exists")
            event_rows[event.id] = self._event_row_of(event)

        new_revision = current.revision + 1
        current.apply(head, rows, new_revision)
        if fence is not None and (current.fence is None or fence > current.fence):
            current.fence = fence
        if head is not None:
            self._schedule(instance.id, current)
        self._subscriptions.update(sub_rows)
        for workflow_id, error_row in error_rows:
            self._errors.setdefault(workflow_id, []).append(error_row)
        # Most writes (a step's end) hold neither: no call then.
        if event_rows:
            self._store_events(event_rows)
        if sub_rows:
            self._reopen_events_for(row for _, row in sub_rows)
        instance.revision = new_revision

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance (``WorkflowNotFoundError`` when unknown)."""
        await checkpoint()
        row = self._instances.get(workflow_id)
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        return row.instance()

    async def get_live_part(self, workflow_id: str) -> LivePart:
        """The head and the active pointers (kept by position: a read costs the same however
        many pointers finished), or the whole instance with ``fast=False``."""
        await checkpoint()
        row = self._instances.get(workflow_id)
        if row is None:
            raise WorkflowNotFoundError(workflow_id)
        if not self.fast:
            return LivePart.of_whole(row.instance())
        return row.live_part()

    async def get_workflows(self, workflow_ids: Iterable[str]) -> Sequence[WorkflowInstance]:
        """The stored instances among ``workflow_ids``, in the order asked, each once."""
        await checkpoint()
        result: list[WorkflowInstance] = []
        seen: set[str] = set()
        for workflow_id in workflow_ids:
            row = self._instances.get(workflow_id)
            if row is not None and workflow_id not in seen:
                seen.add(workflow_id)
                result.append(row.instance())
        return result

    async def get_runnable_instances(self, as_of: datetime) -> Sequence[str]:
        """Ids of runnable instances due at or before ``as_of``, earliest due first."""
        await checkpoint()
        due = [
            (row.head.next_execution, row.seq, workflow_id)
            for workflow_id, row in self._runnable().items()
            if row.head.next_execution is not None and row.head.next_execution <= as_of
        ]
        return [workflow_id for _, _, workflow_id in sorted(due)]

    async def next_execution_time(self) -> datetime | None:
        """The earliest ``next_execution`` of a runnable instance, ``None`` when there is none."""
        await checkpoint()
        times = [row.head.next_execution for row in self._runnable().values()]
        return min(filter(None, times), default=None)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        skip: int = 0,
        take: int = 100,
    ) -> Page[WorkflowInstance]:
        """Instances matching every given filter, newest ``create_time`` first, with the
        total count of matches."""
        await checkpoint()
        rows = [
            row
            for row in self._instances.values()
            if (status is None or row.head.status == status)
            and (definition_id is None or row.head.definition_id == definition_id)
            and (reference is None or row.head.reference == reference)
        ]
        # Newest first; among equal times the later stored comes first.
        rows.sort(key=lambda row: (row.head.create_time, row.seq), reverse=True)
        skip = max(skip, 0)
        take = max(take, 0)
        items = [row.instance() for row in rows[skip : skip + take]]
        return Page(items=items, total=len(rows), skip=skip, take=take)

    async def purge_workflows(
        self, *, older_than: datetime, statuses: Iterable[WorkflowStatus]
    ) -> int:
        """Delete instances in ``statuses`` completed before ``older_than`` with their
        subscriptions and errors; returns how many instances went."""
        await checkpoint()
        wanted = {WorkflowStatus(status) for status in statuses}
        doomed = [
            workflow_id
            for workflow_id, row in self._instances.items()
            if row.head.status in wanted
            and row.head.complete_time is not None
            and row.head.complete_time < older_than
        ]
        doomed_set = set(doomed)
        for workflow_id in doomed:
            del self._instances[workflow_id]
            self._scheduled.pop(workflow_id, None)
            self._errors.pop(workflow_id, None)
        for subscription_id in [
            sid for sid, row in self._subscriptions.items() if row.workflow_id in doomed_set
        ]:
            del self._subscriptions[subscription_id]
        if doomed:
            logger.debug("purged %d workflow instances", len(doomed))
        return len(doomed)

    # -- events ----------------------------------------------------------------------------
    async def create_event(self, event: Event) -> None:
        """Store a new event (``ConcurrencyError`` when its id is already stored)."""
        await checkpoint()
        if event.id in self._events:
            raise ConcurrencyError(f"event {event.id} already exists")
        self._store_events({event.id: self._event_row_of(event)})

    def _store_events(self, rows: dict[str, _EventRow]) -> None:
        self._events.update(rows)
        for event_id, row in rows.items():
            self._topics.setdefault((row.name, row.key), []).append(event_id)

    def _reopen_events_for(self, subscriptions: Iterable[_SubscriptionRow]) -> None:
        """Mark unprocessed the earliest stored event each open subscription of a write
        matches (the one it gets), within that write: should the writer die before queueing
        it, it is still unprocessed for the recovery sweep (an event published before the
        subscription). Only that one: the later ones are not the subscription's, and a key
        reused for years would make every new wait reopen (and deliver) its whole history."""
        for sub in subscriptions:
            if sub.terminated:
                continue
            topic = (sub.event_name, sub.event_key)
            candidates = self._topics.get(topic, ()) if self.fast else list(self._events)
            earliest: tuple[datetime, int, str] | None = None
            for event_id in candidates:
                row = self._events[event_id]
                if (row.name, row.key) == topic and row.time >= sub.subscribe_as_of:
                    order = (row.time, row.seq, event_id)
                    if earliest is None or order < earliest:
                        earliest = order
            if earliest is not None and self._events[earliest[2]].is_processed:
                self._set_processed(earliest[2], False)

    def _event_row_of(self, event: Event) -> _EventRow:
        return _EventRow(
            _encode(event),
            event.name,
            event.key,
            utc(event.time),
            bool(event.is_processed),
            next(self._seq),
        )

    async def get_event(self, event_id: str) -> Event:
        """The stored event (``EventNotFoundError`` when unknown)."""
        await checkpoint()
        return _decode(self._event_row(event_id).document, Event)

    def _event_row(self, event_id: str) -> _EventRow:
        row = self._events.get(event_id)
        if row is None:
            raise EventNotFoundError(event_id)
        return row

    async def get_runnable_events(self, as_of: datetime) -> Sequence[str]:
        """Ids of unprocessed events effective at or before ``as_of``, oldest first."""
        await checkpoint()
        rows = [
            (row.time, row.seq, event_id)
            for event_id, row in self._events.items()
            if not row.is_processed and row.time <= as_of
        ]
        return [event_id for _, _, event_id in sorted(rows)]

    async def get_events(self, name: str, key: str, as_of: datetime) -> Sequence[str]:
        """Ids of events of ``name``/``key`` effective at or after ``as_of``, oldest first."""
        await checkpoint()
        rows = [
            (row.time, row.seq, event_id)
            for event_id, row in self._events.items()
            if row.name == name and row.key == key and row.time >= as_of
        ]
        return [event_id for _, _, event_id in sorted(rows)]

    async def mark_event_processed(self, event_id: str) -> None:
        """Flag the event processed (``EventNotFoundError`` when unknown)."""
        await checkpoint()
        self._set_processed(event_id, True)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Flag the event unprocessed again (``EventNotFoundError`` when unknown)."""
        await checkpoint()
        self._set_processed(event_id, False)

    def _set_processed(self, event_id: str, processed: bool) -> None:
        row = self._event_row(event_id)
        event = _decode(row.document, Event)
        event.is_processed = processed
        row.document = _encode(event)
        row.is_processed = processed

    # -- subscriptions ---------------------------------------------------------------------
    async def create_subscription(self, subscription: EventSubscription) -> None:
        """Store a new subscription (``ConcurrencyError`` when its id is already stored)."""
        await checkpoint()
        if subscription.id in self._subscriptions:
            raise ConcurrencyError(f"subscription {subscription.id} already exists")
        self._subscriptions[subscription.id] = self._subscription_row(subscription, next(self._seq))

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """The stored subscription (``SubscriptionNotFoundError`` when unknown)."""
        await checkpoint()
        return _decode(self._subscription(subscription_id).document, EventSubscription)

    def _subscription(self, subscription_id: str) -> _SubscriptionRow:
        row = self._subscriptions.get(subscription_id)
        if row is None:
            raise SubscriptionNotFoundError(subscription_id)
        return row

    async def get_subscriptions(
        self, name: str, key: str, as_of: datetime
    ) -> Sequence[EventSubscription]:
        """Open subscriptions to ``name``/``key`` subscribed as of ``as_of`` or earlier,
        oldest ``subscribe_as_of`` first."""
        await checkpoint()
        rows = sorted(
            (
                row
                for row in self._subscriptions.values()
                if not row.terminated
                and row.event_name == name
                and row.event_key == key
                and row.subscribe_as_of <= as_of
            ),
            key=lambda row: (row.subscribe_as_of, row.create_time, row.seq),
        )
        return [_decode(row.document, EventSubscription) for row in rows]

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Close the subscription; closing a closed one is a no-op
        (``SubscriptionNotFoundError`` when unknown)."""
        await checkpoint()
        row = self._subscription(subscription_id)
        if row.terminated:
            return
        subscription = _decode(row.document, EventSubscription)
        subscription.terminated = True
        row.document = _encode(subscription)
        row.terminated = True

    # -- external work -----------------------------------------------------------------------
    def _open_rows(self, event_name: str) -> list[_SubscriptionRow]:
        return sorted(
            (
                row
                for row in self._subscriptions.values()
                if not row.terminated and row.event_name == event_name
            ),
            key=lambda row: (row.subscribe_as_of, row.create_time, row.seq),
        )

    async def get_open_subscriptions(
        self, event_name: str, *, skip: int = 0, take: int = 100
    ) -> Sequence[EventSubscription]:
        """Open subscriptions to ``event_name`` (any key), oldest first, paged."""
        await checkpoint()
        rows = self._open_rows(event_name)[max(skip, 0) : max(skip, 0) + max(take, 0)]
        return [_decode(row.document, EventSubscription) for row in rows]

    async def claim_subscription(
        self,
        event_name: str,
        *,
        token: str,
        worker_id: str,
        expires_at: datetime,
        as_of: datetime,
    ) -> EventSubscription | None:
        """Claim the oldest open, unclaimed (or lapsed) subscription to ``event_name``."""
        await checkpoint()
        as_of = utc(as_of)
        # No await between finding and claiming: atomic with respect to other tasks.
        for row in self._open_rows(event_name):
            if row.subscribe_as_of > as_of:
                continue
            subscription = _decode(row.document, EventSubscription)
            expiry = subscription.external_token_expiry
            if subscription.external_token is not None and (expiry is None or utc(expiry) > as_of):
                continue
            subscription.external_token = token
            subscription.external_worker_id = worker_id
            subscription.external_token_expiry = expires_at
            row.document = _encode(subscription)
            return _decode(row.document, EventSubscription)
        return None

    async def release_subscription_claim(self, subscription_id: str, token: str) -> bool:
        """Clear the claim when ``token`` is the current one."""
        await checkpoint()
        row = self._subscription(subscription_id)
        subscription = _decode(row.document, EventSubscription)
        if subscription.external_token != token:
            return False
        subscription.external_token = None
        subscription.external_worker_id = None
        subscription.external_token_expiry = None
        row.document = _encode(subscription)
        return True

    # -- errors ----------------------------------------------------------------------------
    async def get_errors(self, workflow_id: str) -> Sequence[ExecutionError]:
        """Errors recorded for ``workflow_id``, oldest first (empty for an unknown id)."""
        await checkpoint()
        rows = sorted(self._errors.get(workflow_id, ()), key=lambda row: (row.time, row.seq))
        return [_decode(row.document, ExecutionError) for row in rows]
