"""SQLite persistence: workflow instances, events, subscriptions and errors in one file."""

from __future__ import annotations

import json
import logging
import operator
import os
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from wfe_core.errors import (
    ConcurrencyError,
    EventNotFoundError,
    ProviderError,
    StaleLeaseError,
    SubscriptionNotFoundError,
    WorkflowNotFoundError,
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
from wfe_core.providers import Lease, LivePart, PersistenceProvider, this_process
from wfe_core.providers import capabilities as cap
from wfe_core.serialization import from_primitive, to_primitive
from wfe_core.spi import VERIFY_CHANGES_ENV
from wfe_sqlite import _leases as leases
from wfe_sqlite.base import SqliteProviderMixin
from wfe_sqlite.documents import InstanceDocuments, Written, dumps
from wfe_sqlite.engine import driver, from_us, to_us
from wfe_sqlite.options import DEFAULT_URL
from wfe_sqlite.schema import errors, events, pointer_children, pointers, subscriptions, workflows

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence
    from datetime import datetime

    from sqlalchemy import Connection

    from wfe_core.providers import LeaseRequest, LockProvider, PointerWrite
    from wfe_sqlite.options import SqliteOptions

__all__ = ["SqlitePersistence"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RUNNABLE = WorkflowStatus.RUNNABLE.value
# SQLite allows 32766 bound parameters per statement; stay well below.
_CHUNK = 500


def _maybe_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def _instance_columns(
    instance: WorkflowInstance, written: Written
) -> tuple[str, str | None, int | None, int | None, int, str]:
    """The columns an update of ``instance`` writes, in the order of ``_UPDATE_WORKFLOW_SQL``
    (status, reference, next_execution, complete_time, revision, document)."""
    return (
        written.status,
        instance.reference,
        _maybe_us(instance.next_execution),
        _maybe_us(instance.complete_time),
        written.revision,
        written.document,
    )


def _subscription_row(subscription: EventSubscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "workflow_id": subscription.workflow_id,
        "event_name": subscription.event_name,
        "event_key": subscription.event_key,
        "subscribe_as_of": to_us(subscription.subscribe_as_of),
        "create_time": to_us(subscription.create_time),
        "terminated": int(bool(subscription.terminated)),
        "document": dumps(to_primitive(subscription)),
    }


def _error_row(error: ExecutionError) -> dict[str, Any]:
    return {
        "workflow_id": error.workflow_id,
        "time": to_us(error.time),
        "document": dumps(to_primitive(error)),
    }


def _event_row(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "key": event.key,
        "time": to_us(event.time),
        "is_processed": int(bool(event.is_processed)),
        "document": dumps(to_primitive(event)),
    }


def _decode(document: str, cls: type[T], overrides: dict[str, Any] | None = None) -> T:
    try:
        primitive = json.loads(document)
        if overrides:
            primitive.update(overrides)
        return from_primitive(primitive, cls)
    except Exception as exc:
        # A document this code cannot read (edited by hand, or damaged): say which.
        raise ProviderError(
            f"a stored {cls.__name__} cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


def _load_instance(conn: Connection, workflow_id: str, document: str) -> WorkflowInstance:
    """The instance of head ``document`` with its pointers read from their rows."""
    try:
        primitive = json.loads(document)
        primitive["pointers"] = _pointer_primitives(conn, workflow_id, 0, None)
        return from_primitive(primitive, WorkflowInstance)
    except ProviderError:
        raise
    except Exception as exc:
        # A document this code cannot read (edited by hand, or damaged): say which.
        raise ProviderError(
            f"a stored WorkflowInstance cannot be read ({workflow_id}): {type(exc).__name__}: {exc}"
        ) from exc


def _pointer_primitives(
    conn: Connection, workflow_id: str, skip: int, take: int | None
) -> list[dict[str, Any]]:
    """The JSON data of the workflow's pointers from position ``skip`` on (``take`` of them,
    or all), children included."""
    raw = driver(conn)
    limit = -1 if take is None else take
    loaded: list[dict[str, Any]] = []
    for (document,) in raw.execute(_POINTERS_SQL, (workflow_id, skip, limit)):
        pointer = json.loads(document)
        pointer["children"] = []
        loaded.append(pointer)
    if loaded:
        last = skip + len(loaded)
        for position, child in raw.execute(_CHILDREN_SQL, (workflow_id, skip, last)):
            loaded[position - skip]["children"].append(child)
    return loaded


def _pointers_at(
    conn: Connection, workflow_id: str, positions: list[int], starts: list[int]
) -> list[dict[str, Any]]:
    """The JSON data of the workflow's pointers at ``positions`` (in order), children
    included from the index in ``starts`` on (one per position). (The positions of a live
    part are few: a statement per chunk of them.)"""
    raw = driver(conn)
    loaded: dict[int, dict[str, Any]] = {}
    for start in range(0, len(positions), _CHUNK):
        chunk = positions[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for position, document in raw.execute(
            f"SELECT position, document FROM wfe_pointers WHERE workflow_id = ?"
            f" AND position IN ({marks})",
            (workflow_id, *chunk),
        ):
            pointer = json.loads(document)
            pointer["children"] = []
            loaded[position] = pointer
    if len(loaded) != len(positions):
        raise ProviderError(f"workflow {workflow_id}: pointer rows missing")
    for position, start in zip(positions, starts, strict=True):
        # One statement per pointer (they are few), from the primary key's entry of its
        # first id wanted: a loop's container holds one id per round.
        rows = raw.execute(_CHILDREN_FROM_SQL, (workflow_id, position, start)).fetchall()
        if rows:
            loaded[position]["children"] = list(map(_first, rows))
    return [loaded[position] for position in positions]


def _children_starts(counts: list[int]) -> list[int]:
    """The index of the first child id a live part reads of each pointer that has
    ``counts`` ids stored: its last ``_LIVE_CHILDREN`` only."""
    return [max(count - _LIVE_CHILDREN, 0) for count in counts]


def _load_event(document: str, is_processed: int) -> Event:
    # The column is the truth: marking an event (un)processed updates only the column.
    return _decode(document, Event, {"is_processed": bool(is_processed)})


def _load_subscription(document: str, terminated: int) -> EventSubscription:
    return _decode(document, EventSubscription, {"terminated": bool(terminated)})


def _load_error(document: str) -> ExecutionError:
    return _decode(document, ExecutionError)


# Statements are built once: building one per call costs several times what SQLite spends
# running it. The ones run for every workflow (create, update, get) are plain SQL run on the
# driver's connection (see wfe_sqlite.engine.driver).
_INSERT_WORKFLOW_SQL = (
    "INSERT INTO wfe_workflows (id, definition_id, version, create_time, status, reference,"
    " next_execution, complete_time, revision, document, fence)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_UPDATE_WORKFLOW_SQL = (
    "UPDATE wfe_workflows SET status = ?, reference = ?, next_execution = ?,"
    " complete_time = ?, revision = ?, document = ? WHERE id = ? AND revision = ?"
)
# A write under a lease: also refused when a higher fence was accepted, in the same statement.
_UPDATE_FENCED_WORKFLOW_SQL = (
    "UPDATE wfe_workflows SET status = ?, reference = ?, next_execution = ?,"
    " complete_time = ?, revision = ?, document = ?, fence = ?"
    " WHERE id = ? AND revision = ? AND (fence IS NULL OR fence <= ?)"
)
# The same when the head's indexed columns hold their values already (``Written.same_head``:
# most steps of a running instance). SQLite updates every index on a column the SET names,
# changed or not: naming only these writes one page of the table instead of four (the due,
# completion and reference indexes), a quarter of the WAL bytes and half the CPU of the
# statement (measured: 4,120 against 16,480 bytes, 16 against 38 µs).
_UPDATE_DOCUMENT_SQL = (
    "UPDATE wfe_workflows SET revision = ?, document = ? WHERE id = ? AND revision = ?"
)
_UPDATE_FENCED_DOCUMENT_SQL = (
    "UPDATE wfe_workflows SET revision = ?, document = ?, fence = ?"
    " WHERE id = ? AND revision = ? AND (fence IS NULL OR fence <= ?)"
)
_WORKFLOW_DOCUMENT_SQL = "SELECT document FROM wfe_workflows WHERE id = ?"
_WORKFLOW_REVISION_SQL = "SELECT revision, document FROM wfe_workflows WHERE id = ?"
# The pointer count from the primary key's last entry (count(*) would read them all).
_POINTER_END_SQL = "SELECT coalesce(max(position) + 1, 0) FROM wfe_pointers WHERE workflow_id = ?"
_POINTERS_SQL = (
    "SELECT document FROM wfe_pointers WHERE workflow_id = ? AND position >= ?"
    " ORDER BY position LIMIT ?"
)
_CHILDREN_SQL = (
    "SELECT position, child_id FROM wfe_pointer_children"
    " WHERE workflow_id = ? AND position >= ? AND position < ? ORDER BY position, idx"
)
_POINTER_COUNT_SQL = "SELECT count(*) FROM wfe_pointers WHERE workflow_id = ?"
_DELETE_POINTERS_SQL = "DELETE FROM wfe_pointers WHERE workflow_id = ?"
_DELETE_CHILDREN_SQL = "DELETE FROM wfe_pointer_children WHERE workflow_id = ?"
_CHILDREN_FROM_SQL = (
    "SELECT child_id FROM wfe_pointer_children WHERE workflow_id = ? AND position = ?"
    " AND idx >= ? ORDER BY idx"
)
_DELETE_CHILDREN_FROM_SQL = (
    "DELETE FROM wfe_pointer_children WHERE workflow_id = ? AND position = ? AND idx >= ?"
)
#: How many of an active pointer's last child ids a live part reads (``children_start``):
#: a loop's container gets one per round, and a pass looks at the last one only.
_LIVE_CHILDREN = 8
_first = operator.itemgetter(0)
_DELETE_CHILDREN_OF_SQL = "DELETE FROM wfe_pointer_children WHERE workflow_id = ? AND position = ?"
_UPSERT_POINTER_SQL = (
    "INSERT OR REPLACE INTO wfe_pointers (workflow_id, position, document) VALUES (?, ?, ?)"
)
_INSERT_CHILD_SQL = (
    "INSERT OR REPLACE INTO wfe_pointer_children (workflow_id, position, idx, child_id)"
    " VALUES (?, ?, ?, ?)"
)
# The scheduler's polls, as plain SQL too: it runs them after every change it sees.
_DUE_WORKFLOWS_SQL = (
    "SELECT id FROM wfe_workflows WHERE status = ? AND next_execution IS NOT NULL"
    " AND next_execution <= ? ORDER BY next_execution, seq"
)
_NEXT_EXECUTION_SQL = "SELECT min(next_execution) FROM wfe_workflows WHERE status = ?"
# A new open subscription makes the earliest stored event it matches (the one it gets)
# unprocessed again in its own write, so the recovery sweep delivers one published before it
# even when the writer dies before queueing it (ix_wfe_events_name_key serves it). Only that
# one: a new wait's write costs the same however many events its key had.
_REOPEN_EVENTS_SQL = (
    "UPDATE wfe_events SET is_processed = 0 WHERE is_processed = 1 AND id = ("
    "SELECT id FROM wfe_events WHERE name = ? AND key = ? AND time >= ?"
    " ORDER BY time, seq LIMIT 1)"
)
_DUE_EVENTS_SQL = (
    "SELECT id FROM wfe_events WHERE is_processed = 0 AND time <= ? ORDER BY time, seq"
)
_stored_revision = select(workflows.c.revision, workflows.c.fence).where(
    workflows.c.id == bindparam("p_id")
)
_event_document = select(events.c.document, events.c.is_processed).where(
    events.c.id == bindparam("p_id")
)
_matching_events = (
    select(events.c.id)
    .where(
        events.c.name == bindparam("p_name"),
        events.c.key == bindparam("p_key"),
        events.c.time >= bindparam("p_since"),
    )
    .order_by(events.c.time, events.c.seq)
)
_set_processed = (
    update(events)
    .where(events.c.id == bindparam("p_id"))
    .values(is_processed=bindparam("p_processed"))
)
_subscription_document = select(subscriptions.c.document, subscriptions.c.terminated).where(
    subscriptions.c.id == bindparam("p_id")
)
_open_subscriptions = (
    select(subscriptions.c.document, subscriptions.c.terminated)
    .where(
        subscriptions.c.event_name == bindparam("p_name"),
        subscriptions.c.event_key == bindparam("p_key"),
        subscriptions.c.subscribe_as_of <= bindparam("p_limit"),
        subscriptions.c.terminated == 0,
    )
    .order_by(subscriptions.c.subscribe_as_of, subscriptions.c.create_time, subscriptions.c.seq)
)
#: A ``subscribe_as_of`` bound later than any stored time (microseconds; SQLite's integers
#: are 64-bit).
_NO_LIMIT = 2**63 - 1
_named_open_subscriptions = (
    select(subscriptions.c.id, subscriptions.c.document, subscriptions.c.terminated)
    .where(
        subscriptions.c.event_name == bindparam("p_name"),
        subscriptions.c.subscribe_as_of <= bindparam("p_limit"),
        subscriptions.c.terminated == 0,
    )
    .order_by(subscriptions.c.subscribe_as_of, subscriptions.c.create_time, subscriptions.c.seq)
)
_claim_token = func.json_extract(subscriptions.c.document, "$.external_token")
# Claimable in SQL, so that claimed rows are not decoded: unclaimed, claimed by this very
# token (a retried transaction), or lapsed. julianday() reads the ISO 8601 text the
# document holds (any fraction digits, any offset); the Python check after it has the last
# word.
_claimable_subscriptions = _named_open_subscriptions.where(
    or_(
        _claim_token.is_(None),
        _claim_token == bindparam("p_token"),
        func.julianday(func.json_extract(subscriptions.c.document, "$.external_token_expiry"))
        <= func.julianday(bindparam("p_as_of")),
    )
)
_set_subscription_document = (
    update(subscriptions)
    .where(subscriptions.c.id == bindparam("p_id"))
    .values(document=bindparam("p_document"))
)
_terminate_subscription = (
    update(subscriptions).where(subscriptions.c.id == bindparam("p_id")).values(terminated=1)
)
_workflow_errors = (
    select(errors.c.document)
    .where(errors.c.workflow_id == bindparam("p_id"))
    .order_by(errors.c.time, errors.c.seq)
)
_insert_error = errors.insert()

_upsert_subscription = sqlite_insert(subscriptions)
_upsert_subscription = _upsert_subscription.on_conflict_do_update(
    index_elements=[subscriptions.c.id],
    # Replaced by id, keeping its place (seq) among equal times.
    set_={
        name: _upsert_subscription.excluded[name]
        for name in (
            "workflow_id",
            "event_name",
            "event_key",
            "subscribe_as_of",
            "create_time",
            "terminated",
            "document",
        )
    },
)
_insert_event = sqlite_insert(events).on_conflict_do_nothing(index_elements=[events.c.id])
_insert_subscription = sqlite_insert(subscriptions).on_conflict_do_nothing(
    index_elements=[subscriptions.c.id]
)


def _write_pointers(conn: Connection, workflow_id: str, written: Written) -> None:
    """Store the pointer rows of ``written`` (all of them again when it is a full write)."""
    raw = driver(conn)
    if written.full:
        raw.execute(_DELETE_POINTERS_SQL, (workflow_id,))
        raw.execute(_DELETE_CHILDREN_SQL, (workflow_id,))
    for position in written.reset_children:
        raw.execute(_DELETE_CHILDREN_OF_SQL, (workflow_id, position))
    for position, index in written.trim_children:
        raw.execute(_DELETE_CHILDREN_FROM_SQL, (workflow_id, position, index))
    if written.pointer_rows:
        raw.executemany(
            _UPSERT_POINTER_SQL,
            [(workflow_id, position, text) for position, text in written.pointer_rows],
        )
    if written.child_rows:
        raw.executemany(
            _INSERT_CHILD_SQL,
            [(workflow_id, position, i, child) for position, i, child in written.child_rows],
        )


class SqlitePersistence(SqliteProviderMixin, PersistenceProvider):
    """Durable persistence in a SQLite file (or an in-memory database).

    ``SqlitePersistence("sqlite:///wfe.db", SqliteOptions(...))``; use it as
    ``async with``. Instances, events, subscriptions and errors are stored as JSON documents
    next to indexed columns for the queries. :meth:`persist_workflow` is one transaction:
    the revision-checked update of the instance with its subscriptions, errors and events.
    Several processes may share one file; SQLite serializes their writes.

    Writes from the executor re-encode only the pointers it changed (see
    :mod:`wfe_sqlite.documents`). ``verify_changes=True`` (default: whether
    ``WFE_VERIFY_POINTER_CHANGES`` is ``1``) checks each such write against a full encode and
    raises :class:`AssertionError` naming a pointer that changed without being listed (slow;
    for tests).
    """

    capabilities = frozenset({cap.DURABLE, cap.FENCING, cap.EXTERNAL_WORK, cap.LEASED_WRITES})

    def __init__(
        self,
        url: str | None = DEFAULT_URL,
        options: SqliteOptions | None = None,
        *,
        share_connections: bool = True,
        verify_changes: bool | None = None,
    ) -> None:
        super().__init__(url, options, share_connections=share_connections)
        if verify_changes is None:
            verify_changes = os.environ.get(VERIFY_CHANGES_ENV) == "1"
        #: The documents of the instances this provider wrote last.
        self.documents = InstanceDocuments(verify=verify_changes)

    def shares_leases_with(self, lock: LockProvider) -> bool:
        """Whether ``lock`` is a :class:`~wfe_sqlite.SqliteLock` on this provider's very
        store (same database, shared connections; see ``share_connections``)."""
        from wfe_sqlite.lock import SqliteLock

        if not isinstance(lock, SqliteLock):
            return False
        try:
            return lock.store is self.store
        except ProviderError:  # not open
            return False

    # -- workflow instances ----------------------------------------------------------------
    async def create_workflow(
        self, instance: WorkflowInstance, *, lease: LeaseRequest | None = None
    ) -> Lease | None:
        """Store a new instance with revision 1 (set on ``instance`` too); with ``lease``,
        take its lease in the same transaction (see ``PersistenceProvider.create_workflow``)
        and return it, or store nothing and return ``None`` when the key is held.

        Raises :class:`~wfe_core.errors.ConcurrencyError` when the id is already stored.
        """
        workflow_id = instance.id
        documents = self.documents
        try:
            written = documents.encode(instance, 1)
            columns = (
                workflow_id,
                instance.definition_id,
                instance.version,
                to_us(instance.create_time),
                *_instance_columns(instance, written),
            )

            def run(conn: Connection) -> leases.Attempt | None:
                attempt = None
                if lease is not None:
                    ttl_us = leases.ttl_us(lease.ttl)
                    attempt = leases.take(
                        conn,
                        key=workflow_id,
                        owner=lease.owner,
                        ttl_us=ttl_us,
                        holder=this_process(),
                    )
                    if attempt.token is None:
                        return attempt  # held: nothing else is written
                fence = None if attempt is None else attempt.token
                if driver(conn).execute(_INSERT_WORKFLOW_SQL, (*columns, fence)).rowcount == 0:
                    # Raised in the transaction: the lease taken is rolled back with it.
                    raise ConcurrencyError(f"workflow {workflow_id} already exists")
                _write_pointers(conn, workflow_id, written)
                return attempt

            attempt = await self.store.write(run, "create_workflow")
        except BaseException:
            # Whatever is stored now, what this provider kept of the instance may not be it.
            documents.forget(workflow_id)
            raise
        if attempt is not None:
            leases.report_takeover(workflow_id, attempt)
            if attempt.token is None:
                return None  # the key is held: nothing was stored
        documents.remember(workflow_id, written)
        instance.revision = 1
        if lease is None or attempt is None or attempt.token is None:
            return None
        return Lease(
            key=workflow_id,
            owner=lease.owner,
            token=attempt.token,
            expires_at=from_us(attempt.expires_at),
        )

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
        """Write ``instance`` when its revision is the stored one (and, with ``fence``, no
        higher fence was accepted for it: the same ``UPDATE`` checks both), with its
        subscriptions (added, or replaced by id), errors (appended) and events (added; an id
        already stored refuses the write with ``ConcurrencyError``), in one transaction;
        with ``release``, fenced by its token, and freeing its key in that transaction (or
        refused with :class:`~wfe_core.errors.LockNotHeldError` when it is not current).

        With ``changed_pointers``, only the rows of those pointers and new ones are written
        (and the child ids added since), when this provider wrote the instance's revision;
        else every pointer row of the instance is written again. With ``pointer_write`` (a
        live part's), the rows it names by position.

        Raises :class:`~wfe_core.errors.StaleLeaseError` (older fence),
        :class:`~wfe_core.errors.ConcurrencyError` (stale revision) or
        :class:`~wfe_core.errors.WorkflowNotFoundError`; then nothing is stored.
        """
        expected = instance.revision
        workflow_id = instance.id
        documents = self.documents
        if release is not None:
            fence = release.token
        try:
            if pointer_write is None:
                written = documents.encode(instance, expected + 1, changed_pointers)
            else:
                written = documents.encode_live(instance, expected + 1, pointer_write)
            params: tuple[Any, ...]
            if written.same_head:
                if fence is None:
                    statement = _UPDATE_DOCUMENT_SQL
                    params = (written.revision, written.document, workflow_id, expected)
                else:
                    statement = _UPDATE_FENCED_DOCUMENT_SQL
                    params = (
                        written.revision,
                        written.document,
                        fence,
                        workflow_id,
                        expected,
                        fence,
                    )
            else:
                columns = _instance_columns(instance, written)
                if fence is None:
                    statement = _UPDATE_WORKFLOW_SQL
                    params = (*columns, workflow_id, expected)
                else:
                    statement = _UPDATE_FENCED_WORKFLOW_SQL
                    params = (*columns, fence, workflow_id, expected, fence)
            # Serialized here, before anything is written: a value that fails stores nothing.
            # (Each list made only when there is something to put in it: a comprehension is a
            # call of its own, and a loop's round has none of these.)
            sub_rows = [_subscription_row(s) for s in subscriptions] if subscriptions else []
            reopened = (
                [
                    (row["event_name"], row["event_key"], row["subscribe_as_of"])
                    for row in sub_rows
                    if not row["terminated"]
                ]
                if sub_rows
                else []
            )
            error_rows = [_error_row(e) for e in errors] if errors else []
            event_rows = [_event_row(e) for e in events] if events else []

            def run(conn: Connection) -> None:
                if driver(conn).execute(statement, params).rowcount == 0:
                    row = conn.execute(_stored_revision, {"p_id": workflow_id}).first()
                    if row is None:
                        raise WorkflowNotFoundError(workflow_id)
                    stored, highest = row
                    if fence is not None and highest is not None and fence < highest:
                        raise StaleLeaseError(
                            f"workflow {workflow_id}: fencing token {fence} is stale (a write"
                            f" under token {highest} was accepted)"
                        )
                    raise ConcurrencyError(
                        f"workflow {workflow_id}: revision {expected} is stale (stored: {stored})"
                    )
                if release is not None:
                    # Not current: raised in the transaction, so the update is rolled back.
                    leases.release(conn, release)
                _write_pointers(conn, workflow_id, written)
                if sub_rows:
                    conn.execute(_upsert_subscription, sub_rows)
                if error_rows:
                    conn.execute(_insert_error, error_rows)
                # After a write: raising here makes the store roll the whole write back.
                if event_rows and conn.execute(_insert_event, event_rows).rowcount != len(
                    event_rows
                ):
                    raise ConcurrencyError(
                        f"workflow {workflow_id}: an event's id is already stored"
                    )
                if reopened:
                    driver(conn).executemany(_REOPEN_EVENTS_SQL, reopened)

            await self.store.write(run, "persist_workflow")
            if release is not None:
                self.store.notify(leases.channel(workflow_id))
        except BaseException:
            # A refused write means another wrote the instance, and a failed or cancelled one
            # may or may not have been stored: what is kept may not be what is stored.
            documents.forget(workflow_id)
            raise
        documents.remember(workflow_id, written)
        instance.revision = expected + 1

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance (``WorkflowNotFoundError`` when unknown)."""

        params = (workflow_id,)

        def run(conn: Connection) -> WorkflowInstance:
            row = driver(conn).execute(_WORKFLOW_DOCUMENT_SQL, params).fetchone()
            if row is None:
                raise WorkflowNotFoundError(workflow_id)
            return _load_instance(conn, workflow_id, row[0])

        return await self.store.read(run, "get_workflow")

    async def get_live_part(self, workflow_id: str) -> LivePart:
        """The head and the active pointers' rows (of their child ids, the last few:
        ``LivePart.children_start``), when this provider wrote the stored revision (it keeps
        which pointers are active and their child counts: see :mod:`wfe_sqlite.documents`);
        else the whole instance."""
        kept = self.documents.kept_live(workflow_id)
        params = (workflow_id,)

        def run(conn: Connection) -> LivePart:
            raw = driver(conn)
            row = raw.execute(_WORKFLOW_REVISION_SQL, params).fetchone()
            if row is None:
                raise WorkflowNotFoundError(workflow_id)
            revision, document = row
            if kept is None or kept[0] != revision:
                return LivePart.of_whole(_load_instance(conn, workflow_id, document))
            _, positions, counts = kept
            starts = _children_starts(counts)
            try:
                primitive = json.loads(document)
                loaded = _pointers_at(conn, workflow_id, positions, starts)
                primitive["pointers"] = loaded
                instance = from_primitive(primitive, WorkflowInstance)
                stored = raw.execute(_POINTER_END_SQL, params).fetchone()[0]
            except Exception as exc:
                raise ProviderError(
                    f"a stored WorkflowInstance cannot be read ({workflow_id}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return LivePart(
                instance,
                stored,
                {p.id: i for p, i in zip(instance.pointers, positions, strict=True)},
                children_start={
                    p.id: start for p, start in zip(instance.pointers, starts, strict=True) if start
                },
            )

        return await self.store.read(run, "get_live_part")

    async def get_workflows(self, workflow_ids: Iterable[str]) -> Sequence[WorkflowInstance]:
        """The stored instances among ``workflow_ids``, in the order asked, each once."""
        wanted = list(dict.fromkeys(workflow_ids))
        if not wanted:
            return []

        def run(conn: Connection) -> list[WorkflowInstance]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                for row in conn.execute(
                    select(workflows.c.id, workflows.c.document).where(workflows.c.id.in_(chunk))
                ):
                    found[row.id] = row.document
            return [_load_instance(conn, i, found[i]) for i in wanted if i in found]

        return await self.store.read(run, "get_workflows")

    async def get_pointers(
        self, workflow_id: str, *, skip: int = 0, take: int = 100
    ) -> Page[ExecutionPointer]:
        """The workflow's pointers from position ``skip`` on, at most ``take``, read from
        their rows (a page costs the same however long the workflow is)."""
        skip = max(skip, 0)
        take = max(take, 0)

        def run(conn: Connection) -> Page[ExecutionPointer]:
            raw = driver(conn)
            if raw.execute(_WORKFLOW_DOCUMENT_SQL, (workflow_id,)).fetchone() is None:
                raise WorkflowNotFoundError(workflow_id)
            total = raw.execute(_POINTER_COUNT_SQL, (workflow_id,)).fetchone()[0]
            try:
                items = [
                    from_primitive(p, ExecutionPointer)
                    for p in _pointer_primitives(conn, workflow_id, skip, take)
                ]
            except Exception as exc:
                raise ProviderError(
                    f"a stored pointer of workflow {workflow_id} cannot be read: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return Page(items=items, total=total, skip=skip, take=take)

        return await self.store.read(run, "get_pointers")

    async def get_runnable_instances(self, as_of: datetime) -> Sequence[str]:
        """Ids of runnable instances due at or before ``as_of``, earliest due first."""
        params = (_RUNNABLE, to_us(as_of))

        def run(conn: Connection) -> list[str]:
            return [row[0] for row in driver(conn).execute(_DUE_WORKFLOWS_SQL, params)]

        return await self.store.read(run, "get_runnable_instances")

    async def next_execution_time(self) -> datetime | None:
        """The earliest ``next_execution`` of a runnable instance, ``None`` when there is none."""

        def run(conn: Connection) -> int | None:
            value: int | None = (
                driver(conn).execute(_NEXT_EXECUTION_SQL, (_RUNNABLE,)).fetchone()[0]
            )
            return value

        value = await self.store.read(run, "next_execution_time")
        return None if value is None else from_us(value)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        skip: int = 0,
        take: int = 100,
    ) -> Page[WorkflowInstance]:
        """Instances matching every given filter, newest ``create_time`` first (the later
        stored first among equal times), with the total count of matches."""
        skip = max(skip, 0)
        take = max(take, 0)
        conditions = []
        if status is not None:
            conditions.append(workflows.c.status == WorkflowStatus(status).value)
        if definition_id is not None:
            conditions.append(workflows.c.definition_id == definition_id)
        if reference is not None:
            conditions.append(workflows.c.reference == reference)

        def run(conn: Connection) -> Page[WorkflowInstance]:
            # One read transaction: the count and the page come from the same snapshot.
            total = conn.execute(
                select(func.count()).select_from(workflows).where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                select(workflows.c.id, workflows.c.document)
                .where(*conditions)
                .order_by(workflows.c.create_time.desc(), workflows.c.seq.desc())
                .limit(take)
                .offset(skip)
            ).all()
            items = [_load_instance(conn, row.id, row.document) for row in rows]
            return Page(items=items, total=total, skip=skip, take=take)

        return await self.store.read(run, "list_workflows")

    async def purge_workflows(
        self, *, older_than: datetime, statuses: Iterable[WorkflowStatus]
    ) -> int:
        """Delete instances in ``statuses`` completed before ``older_than`` with their
        subscriptions and errors; returns how many instances went."""
        wanted = sorted({WorkflowStatus(s).value for s in statuses})
        if not wanted:
            return 0
        limit = to_us(older_than)
        doomed = select(workflows.c.id).where(
            workflows.c.status.in_(wanted),
            workflows.c.complete_time.is_not(None),
            workflows.c.complete_time < limit,
        )

        def run(conn: Connection) -> int:
            conn.execute(delete(subscriptions).where(subscriptions.c.workflow_id.in_(doomed)))
            conn.execute(delete(errors).where(errors.c.workflow_id.in_(doomed)))
            conn.execute(delete(pointers).where(pointers.c.workflow_id.in_(doomed)))
            conn.execute(delete(pointer_children).where(pointer_children.c.workflow_id.in_(doomed)))
            count: int = conn.execute(delete(workflows).where(workflows.c.id.in_(doomed))).rowcount
            return count

        count = await self.store.write(run, "purge_workflows")
        # The purged instances are finished ones, which are not kept; but an id stored again
        # later must not meet what was kept of it (cheap: purges are rare).
        self.documents.clear()
        if count:
            logger.debug("purged %d workflow instances", count)
        return count

    # -- events ----------------------------------------------------------------------------
    async def create_event(self, event: Event) -> None:
        """Store a new event (``ConcurrencyError`` when its id is already stored)."""
        row = _event_row(event)

        def run(conn: Connection) -> None:
            if conn.execute(_insert_event, row).rowcount == 0:
                raise ConcurrencyError(f"event {row['id']} already exists")

        await self.store.write(run, "create_event")

    async def get_event(self, event_id: str) -> Event:
        """The stored event (``EventNotFoundError`` when unknown)."""

        def run(conn: Connection) -> Event:
            row = conn.execute(_event_document, {"p_id": event_id}).first()
            if row is None:
                raise EventNotFoundError(event_id)
            return _load_event(row.document, row.is_processed)

        return await self.store.read(run, "get_event")

    async def get_runnable_events(self, as_of: datetime) -> Sequence[str]:
        """Ids of unprocessed events effective at or before ``as_of``, oldest first."""
        params = (to_us(as_of),)

        def run(conn: Connection) -> list[str]:
            return [row[0] for row in driver(conn).execute(_DUE_EVENTS_SQL, params)]

        return await self.store.read(run, "get_runnable_events")

    async def get_events(self, name: str, key: str, as_of: datetime) -> Sequence[str]:
        """Ids of events of ``name``/``key`` effective at or after ``as_of``, processed or
        not, oldest first."""
        since = to_us(as_of)

        def run(conn: Connection) -> list[str]:
            params = {"p_name": name, "p_key": key, "p_since": since}
            return list(conn.execute(_matching_events, params).scalars())

        return await self.store.read(run, "get_events")

    async def mark_event_processed(self, event_id: str) -> None:
        """Flag the event processed (``EventNotFoundError`` when unknown)."""
        await self._set_processed(event_id, True)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Flag the event unprocessed again (``EventNotFoundError`` when unknown)."""
        await self._set_processed(event_id, False)

    async def _set_processed(self, event_id: str, processed: bool) -> None:
        def run(conn: Connection) -> None:
            params = {"p_id": event_id, "p_processed": int(processed)}
            if conn.execute(_set_processed, params).rowcount == 0:
                raise EventNotFoundError(event_id)

        # A lost "processed" mark (power failure) only delivers the event again, which finds
        # its subscriptions served; a lost "unprocessed" one would lose the event.
        await self.store.write(run, "mark_event_processed", durable=not processed)

    # -- subscriptions ---------------------------------------------------------------------
    async def create_subscription(self, subscription: EventSubscription) -> None:
        """Store a new subscription (``ConcurrencyError`` when its id is already stored)."""
        row = _subscription_row(subscription)

        def run(conn: Connection) -> None:
            if conn.execute(_insert_subscription, row).rowcount == 0:
                raise ConcurrencyError(f"subscription {row['id']} already exists")

        await self.store.write(run, "create_subscription")

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """The stored subscription (``SubscriptionNotFoundError`` when unknown)."""

        def run(conn: Connection) -> EventSubscription:
            row = conn.execute(_subscription_document, {"p_id": subscription_id}).first()
            if row is None:
                raise SubscriptionNotFoundError(subscription_id)
            return _load_subscription(row.document, row.terminated)

        return await self.store.read(run, "get_subscription")

    async def get_subscriptions(
        self, name: str, key: str, as_of: datetime
    ) -> Sequence[EventSubscription]:
        """Open subscriptions to ``name``/``key`` subscribed as of ``as_of`` or earlier,
        oldest ``subscribe_as_of`` first."""
        limit = to_us(as_of)

        def run(conn: Connection) -> list[EventSubscription]:
            params = {"p_name": name, "p_key": key, "p_limit": limit}
            rows = conn.execute(_open_subscriptions, params)
            return [_load_subscription(r.document, r.terminated) for r in rows]

        return await self.store.read(run, "get_subscriptions")

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Close the subscription; closing a closed one is a no-op
        (``SubscriptionNotFoundError`` when unknown)."""

        def run(conn: Connection) -> None:
            if conn.execute(_terminate_subscription, {"p_id": subscription_id}).rowcount == 0:
                raise SubscriptionNotFoundError(subscription_id)

        await self.store.write(run, "terminate_subscription")

    # -- external work -----------------------------------------------------------------------
    async def get_open_subscriptions(
        self, event_name: str, *, skip: int = 0, take: int = 100
    ) -> Sequence[EventSubscription]:
        """Open subscriptions to ``event_name`` (any key), oldest first, paged."""
        params = {"p_name": event_name, "p_limit": _NO_LIMIT}
        statement = _named_open_subscriptions.limit(max(take, 0)).offset(max(skip, 0))

        def run(conn: Connection) -> list[EventSubscription]:
            rows = conn.execute(statement, params)
            return [_load_subscription(r.document, r.terminated) for r in rows]

        return await self.store.read(run, "get_open_subscriptions")

    async def claim_subscription(
        self,
        event_name: str,
        *,
        token: str,
        worker_id: str,
        expires_at: datetime,
        as_of: datetime,
    ) -> EventSubscription | None:
        """Claim the oldest open, unclaimed (or lapsed) subscription to ``event_name``, in
        one write transaction (SQLite serializes writers, also across processes)."""
        params = {
            "p_name": event_name,
            "p_limit": to_us(as_of),
            "p_token": token,
            "p_as_of": as_of.isoformat(),
        }

        def claimable(conn: Connection) -> tuple[str, EventSubscription] | None:
            for row in conn.execute(_claimable_subscriptions, params):
                subscription = _load_subscription(row.document, row.terminated)
                if subscription.external_token == token:
                    # This transaction ran before and is being retried (see store.write).
                    return row.id, subscription
                expiry = subscription.external_token_expiry
                if subscription.external_token is None or (expiry is not None and expiry <= as_of):
                    return row.id, subscription
            return None

        # A worker waiting for work asks again and again: look in a read first, so that
        # asking while nothing is claimable takes no write lock on the file.
        if await self.store.read(claimable, "claim_subscription") is None:
            return None

        def run(conn: Connection) -> EventSubscription | None:
            found = claimable(conn)
            if found is None:
                return None  # another worker took it meanwhile
            subscription_id, subscription = found
            if subscription.external_token != token:
                subscription.external_token = token
                subscription.external_worker_id = worker_id
                subscription.external_token_expiry = expires_at
                conn.execute(
                    _set_subscription_document,
                    {"p_id": subscription_id, "p_document": dumps(to_primitive(subscription))},
                )
            return subscription

        return await self.store.write(run, "claim_subscription")

    async def release_subscription_claim(self, subscription_id: str, token: str) -> bool:
        """Clear the claim when ``token`` is the current one."""

        def run(conn: Connection) -> bool:
            row = conn.execute(_subscription_document, {"p_id": subscription_id}).first()
            if row is None:
                raise SubscriptionNotFoundError(subscription_id)
            subscription = _load_subscription(row.document, row.terminated)
            if subscription.external_token != token:
                return False
            subscription.external_token = None
            subscription.external_worker_id = None
            subscription.external_token_expiry = None
            conn.execute(
                _set_subscription_document,
                {"p_id": subscription_id, "p_document": dumps(to_primitive(subscription))},
            )
            return True

        return await self.store.write(run, "release_subscription_claim")

    # -- errors ----------------------------------------------------------------------------
    async def get_errors(self, workflow_id: str) -> Sequence[ExecutionError]:
        """Errors recorded for ``workflow_id``, oldest first (empty for an unknown id)."""

        def run(conn: Connection) -> list[ExecutionError]:
            documents = conn.execute(_workflow_errors, {"p_id": workflow_id}).scalars()
            return [_load_error(d) for d in documents]

        return await self.store.read(run, "get_errors")
