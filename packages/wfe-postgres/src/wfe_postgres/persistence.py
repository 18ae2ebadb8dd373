"""PostgreSQL persistence: workflow instances, events, subscriptions and errors."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg.errors

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
from wfe_postgres import _arrays as arrays
from wfe_postgres import _sql as q
from wfe_postgres._batch import batcher_of
from wfe_postgres._documents import InstanceRows, Write, dumps
from wfe_postgres._listener import channel_for
from wfe_postgres._merged_writes import CREATES, LEASED_CREATES, PLAIN_WRITES, RELEASING_WRITES
from wfe_postgres.base import PostgresProviderMixin
from wfe_postgres.lock import lock_topic, not_current
from wfe_postgres.migrations import SchemaVersions, check_schema

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence
    from datetime import datetime

    from wfe_core.providers import LeaseRequest, LockProvider, PointerWrite
    from wfe_postgres._database import Connection
    from wfe_postgres.options import PostgresOptions

__all__ = ["PostgresPersistence"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def _pointer(document: str, children: list[str] | None) -> dict[str, Any]:
    pointer: dict[str, Any] = json.loads(document)
    pointer["children"] = children or []
    return pointer


def _assemble(rows: list[tuple[Any, ...]]) -> dict[str, WorkflowInstance]:
    """Instances from the rows of ``q.LOAD_WORKFLOWS`` (heads first, then pointers in order)."""
    heads: dict[str, dict[str, Any]] = {}
    for workflow_id, position, document, children in rows:
        try:
            if position is None:
                head = json.loads(document)
                head["pointers"] = []
                heads[workflow_id] = head
            else:
                heads[workflow_id]["pointers"].append(_pointer(document, children))
        except Exception as exc:
            raise ProviderError(
                f"a stored WorkflowInstance cannot be read ({workflow_id}):"
                f" {type(exc).__name__}: {exc}"
            ) from exc
    loaded: dict[str, WorkflowInstance] = {}
    for workflow_id, head in heads.items():
        try:
            loaded[workflow_id] = from_primitive(head, WorkflowInstance)
        except Exception as exc:
            raise ProviderError(
                f"a stored WorkflowInstance cannot be read ({workflow_id}):"
                f" {type(exc).__name__}: {exc}"
            ) from exc
    return loaded


async def _load(conn: Connection, ids: list[str]) -> dict[str, WorkflowInstance]:
    cursor = await conn.execute(q.LOAD_WORKFLOWS, {"ids": ids})
    return _assemble(await cursor.fetchall())


def _subscription_columns(subscriptions: Iterable[EventSubscription]) -> list[list[Any]]:
    columns: list[list[Any]] = [[], [], [], [], [], [], [], []]
    for s in subscriptions:
        values = (
            s.id,
            s.workflow_id,
            s.event_name,
            s.event_key,
            s.subscribe_as_of,
            s.create_time,
            bool(s.terminated),
            dumps(to_primitive(s)),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _error_columns(errors: Iterable[ExecutionError]) -> list[list[Any]]:
    columns: list[list[Any]] = [[], [], []]
    for e in errors:
        values = (e.workflow_id, e.time, dumps(to_primitive(e)))
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _event_columns(events: Iterable[Event]) -> list[list[Any]]:
    columns: list[list[Any]] = [[], [], [], [], [], []]
    for e in events:
        values = (e.id, e.name, e.key, e.time, bool(e.is_processed), dumps(to_primitive(e)))
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


_SUBSCRIPTION_KEYS = (
    "s_id",
    "s_workflow",
    "s_name",
    "s_key",
    "s_as_of",
    "s_created",
    "s_terminated",
    "s_document",
)
_ERROR_KEYS = ("e_workflow", "e_time", "e_document")
_EVENT_KEYS = ("v_id", "v_name", "v_key", "v_time", "v_processed", "v_document")
#: How many of an active pointer's last child ids a live part reads
#: (``LivePart.children_start``).
_LIVE_CHILDREN = 8


def _literals(keys: Sequence[str], columns: list[list[Any]]) -> dict[str, str]:
    return {key: arrays.array(column) for key, column in zip(keys, columns, strict=True)}


def _head_params(instance: WorkflowInstance, write: Write) -> dict[str, Any]:
    return {
        "id": instance.id,
        "status": instance.status.value,
        "reference": instance.reference,
        "next_execution": instance.next_execution,
        "complete_time": instance.complete_time,
        "revision": write.revision,
        "pointer_count": write.pointer_count,
        "document": write.document,
    }


def _pointer_params(write: Write) -> dict[str, Any]:
    return {
        "positions": arrays.integers(write.positions),
        "texts": arrays.texts(write.texts),
        "child_positions": arrays.integers(write.child_positions),
        "child_indices": arrays.integers(write.child_indices),
        "child_ids": arrays.texts(write.child_ids),
        # Not the statement's: for merging it with others (see _merged_writes).
        "pointer_rows": len(write.positions),
        "child_rows": len(write.child_ids),
    }


class PostgresPersistence(PostgresProviderMixin, PersistenceProvider):
    """Durable persistence in PostgreSQL, shared by any number of hosts.

    ``PostgresPersistence("postgresql://user@host/db", PostgresOptions(...))``; use it as
    ``async with``. Opening connects (one pool shared with the queue and lock of the same URL
    and options) and brings the schema up to date (see :mod:`wfe_postgres.migrations`).

    An instance is stored as a head row, one row per pointer and one per child id; a write
    from the executor (with ``changed_pointers``) is one statement storing the head, the
    changed and new pointers, the child ids added, and the subscriptions, errors and events
    passed with it. :meth:`persist_workflow` checks the revision and the fencing token in the
    same statement: a stale revision raises :class:`~wfe_core.errors.ConcurrencyError`, a
    ``fence`` lower than the highest the instance has accepted raises
    :class:`~wfe_core.errors.StaleLeaseError`, and nothing is stored.
    """

    capabilities = frozenset(
        {
            cap.DURABLE,
            cap.FENCING,
            cap.ASYNCIO_ONLY,
            cap.EXTERNAL_WORK,
            cap.REMOTE,
            cap.LEASED_WRITES,
        }
    )

    def __init__(
        self,
        url: str | None,
        options: PostgresOptions | None = None,
        *,
        share_connections: bool = True,
    ) -> None:
        super().__init__(url, options, share_connections=share_connections)
        #: What this provider stored of the instances it wrote last.
        self.rows = InstanceRows()
        #: The notification channel of this schema (a write giving a lease back wakes the
        #: key's waiters on it).
        self.channel = channel_for(self.target.options.schema)

    async def check_schema(self) -> SchemaVersions:
        """The schema's status; :class:`~wfe_postgres.migrations.SchemaVersionError` naming
        what to run when it is not up to date."""
        return await check_schema(self.database)

    # -- workflow instances ----------------------------------------------------------------
    def shares_leases_with(self, lock: LockProvider) -> bool:
        """Whether ``lock`` is a :class:`~wfe_postgres.PostgresLock` on this provider's very
        pool (same URL and options, shared connections): its leases are rows of this
        schema's ``wfe_locks``."""
        from wfe_postgres.lock import PostgresLock

        if not isinstance(lock, PostgresLock):
            return False
        try:
            return lock.database is self.database
        except ProviderError:  # not open
            return False

    async def create_workflow(
        self, instance: WorkflowInstance, *, lease: LeaseRequest | None = None
    ) -> Lease | None:
        """Store a new instance with revision 1 (set on ``instance`` too); with ``lease``,
        take its lease in the same statement (see ``PersistenceProvider.create_workflow``)
        and return it, or store nothing and return ``None`` when the key is held (also by a
        process found gone: the lock's acquire takes such a key over, this does not).

        Raises :class:`~wfe_core.errors.ConcurrencyError` when the id is already stored.
        """
        workflow_id = instance.id
        rows = self.rows
        rows.forget(workflow_id)
        write = rows.encode(instance, 1)
        params = {
            **_head_params(instance, write),
            **_pointer_params(write),
            "definition_id": instance.definition_id,
            "version": instance.version,
            "create_time": instance.create_time,
        }
        batcher = batcher_of(self.database)
        if lease is None:
            found = await batcher.run(q.CREATE_WORKFLOW, params, "create_workflow", merge=CREATES)
            if not found or not found[0][0]:
                raise ConcurrencyError(f"workflow {workflow_id} already exists")
            rows.remember(workflow_id, write)
            instance.revision = 1
            return None
        host, pid = this_process()
        params.update(lease_owner=lease.owner, ttl=float(lease.ttl), host=host, pid=pid)
        ((created, token, expires_at, existed),) = await batcher.run(
            q.CREATE_LEASED_WORKFLOW, params, "create_workflow", merge=LEASED_CREATES
        )
        if not created:
            if token is not None:
                # Created by another meanwhile (after this statement's look): no lease kept.
                await batcher.run(q.DROP_LEASE, {"id": workflow_id, "token": token}, "release")
            if existed or token is not None:
                raise ConcurrencyError(f"workflow {workflow_id} already exists")
            return None  # the key is held: nothing stored
        rows.remember(workflow_id, write)
        instance.revision = 1
        return Lease(key=workflow_id, owner=lease.owner, token=int(token), expires_at=expires_at)

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
        """Write ``instance`` when its revision is the stored one and ``fence`` (the lease
        token the writer holds, if any) is not older than the highest accepted for it, with
        its subscriptions (added, or replaced by id), errors (appended) and events (added; an
        id already stored refuses the write with ``ConcurrencyError``), all or nothing; with
        ``release``, fenced by its token, and freeing its key in the same statement (or
        refused with :class:`~wfe_core.errors.LockNotHeldError` when it is not current).

        Raises :class:`~wfe_core.errors.StaleLeaseError` (an older fence),
        :class:`~wfe_core.errors.ConcurrencyError` (stale revision) or
        :class:`~wfe_core.errors.WorkflowNotFoundError`; then nothing is stored.
        """
        expected = instance.revision
        workflow_id = instance.id
        rows = self.rows
        if release is not None:
            fence = release.token
        try:
            if pointer_write is None:
                write = rows.encode(instance, expected + 1, changed_pointers)
            else:
                write = rows.encode_live(instance, expected + 1, pointer_write)
            # Serialized here, before anything is written: a value that fails stores nothing.
            subscription_columns = _subscription_columns(subscriptions)
            error_columns = _error_columns(errors)
            event_columns = _event_columns(events)
            params = {**_head_params(instance, write), "expected": expected, "fence": fence}
            if release is not None:
                params.update(
                    lease_owner=release.owner,
                    channel=self.channel,
                    topic=lock_topic(workflow_id),
                )
            has_subscriptions = bool(subscription_columns[0])
            # Whether a subscription is open: then the events it matches are reopened.
            reopen = not all(subscription_columns[6])
            has_errors = bool(error_columns[0])
            has_events = bool(event_columns[0])
            if has_subscriptions:
                params.update(_literals(_SUBSCRIPTION_KEYS, subscription_columns))
            if has_errors:
                params.update(_literals(_ERROR_KEYS, error_columns))
            if has_events:
                params.update(_literals(_EVENT_KEYS, event_columns))

            def duplicate(exc: psycopg.Error) -> BaseException | None:
                if isinstance(exc, psycopg.errors.UniqueViolation):
                    # The one unique key a write can meet: an event id already stored (or
                    # twice in the write). The statement stored nothing.
                    return ConcurrencyError(
                        f"workflow {workflow_id}: an event's id is already stored"
                    )
                return None

            async def execute(conn: Connection, statement: str, values: dict[str, Any]) -> None:
                try:
                    cursor = await conn.execute(statement, values)
                except psycopg.Error as exc:
                    mapped = duplicate(exc)
                    if mapped is None:
                        raise
                    raise mapped from None
                check(await cursor.fetchone())

            def check(result: tuple[Any, ...] | None) -> None:
                if result is None:  # pragma: no cover - the statement always returns a row
                    raise ProviderError("persist_workflow returned no row")
                updated, stored_revision, stored_fence = result[:3]
                if updated:
                    return
                if stored_revision is None:
                    raise WorkflowNotFoundError(workflow_id)
                if fence is not None and stored_fence is not None and stored_fence > fence:
                    raise StaleLeaseError(
                        f"workflow {workflow_id}: fencing token {fence} is older than the"
                        f" newest accepted ({stored_fence}); the lease was lost"
                    )
                if release is not None and stored_revision == expected and not result[3]:
                    raise not_current(release)
                raise ConcurrencyError(
                    f"workflow {workflow_id}: revision {expected} is stale"
                    f" (stored: {stored_revision})"
                )

            if not write.full:
                # One statement: atomic on its own, and sent with the other writes made at
                # the same time (one round trip and one commit for them all).
                statement = q.persist(
                    bool(write.positions),
                    has_subscriptions,
                    has_errors,
                    has_events,
                    reopen,
                    release is not None,
                )
                # Merged with the other writes of its kind (the head and pointer rows only;
                # giving a lease back or not) made at the same time.
                plain = not (has_subscriptions or has_errors or has_events)
                merge = RELEASING_WRITES if release is not None else PLAIN_WRITES
                found = await batcher_of(self.database).run(
                    statement,
                    {**params, **_pointer_params(write)},
                    "persist_workflow",
                    errors=duplicate,
                    merge=merge if plain else None,
                )
                check(found[0] if found else None)
            else:

                async def run(conn: Connection) -> None:
                    statement = q.persist(
                        False,
                        has_subscriptions,
                        has_errors,
                        has_events,
                        reopen,
                        release is not None,
                    )
                    await execute(conn, statement, params)
                    await conn.execute(q.REPLACE_POINTERS, params)
                    await conn.execute(
                        q.INSERT_POINTERS, {"id": workflow_id, **_pointer_params(write)}
                    )

                await self.database.run(run, "persist_workflow")
        except BaseException:
            # A refused write means another wrote the instance, and a failed or cancelled one
            # may or may not have been stored: what is kept may not be what is stored.
            rows.forget(workflow_id)
            raise
        rows.remember(workflow_id, write)
        instance.revision = expected + 1

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance (``WorkflowNotFoundError`` when unknown)."""

        async def run(conn: Connection) -> dict[str, WorkflowInstance]:
            return await _load(conn, [workflow_id])

        found = await self.database.run(run, "get_workflow", transaction=False)
        instance = found.get(workflow_id)
        if instance is None:
            raise WorkflowNotFoundError(workflow_id)
        return instance

    async def get_live_part(self, workflow_id: str) -> LivePart:
        """The head and the active pointers (of their child ids, the last few:
        ``LivePart.children_start``), when this process wrote the stored revision (it keeps
        which pointers are active and their child counts); else the whole instance."""
        kept = self.rows.kept_live(workflow_id)
        if kept is None:
            return LivePart.of_whole(await self.get_workflow(workflow_id))
        revision, positions, counts = kept
        # A loop's container gets a child id per round; a pass looks at the last only.
        starts = [max(count - _LIVE_CHILDREN, 0) for count in counts]
        params = {"id": workflow_id, "positions": positions, "starts": starts}

        async def run(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(q.LOAD_LIVE, params)
            return await cursor.fetchall()

        found = await self.database.run(run, "get_live_part", transaction=False)
        if not found:
            raise WorkflowNotFoundError(workflow_id)
        stored_revision, count, head_text, _, _, _ = found[0]
        if stored_revision != revision:
            return LivePart.of_whole(await self.get_workflow(workflow_id))
        try:
            head = json.loads(head_text)
            head["pointers"] = [
                _pointer(document, children)
                for _, _, _, position, document, children in found
                if position is not None
            ]
            instance = from_primitive(head, WorkflowInstance)
        except Exception as exc:
            raise ProviderError(
                f"a stored WorkflowInstance cannot be read ({workflow_id}):"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        if len(instance.pointers) != len(positions):
            raise ProviderError(f"workflow {workflow_id}: pointer rows missing")
        return LivePart(
            instance,
            count,
            {p.id: i for p, i in zip(instance.pointers, positions, strict=True)},
            children_start={
                p.id: start for p, start in zip(instance.pointers, starts, strict=True) if start
            },
        )

    async def get_workflows(self, workflow_ids: Iterable[str]) -> Sequence[WorkflowInstance]:
        """The stored instances among ``workflow_ids``, in the order asked, each once."""
        wanted = list(dict.fromkeys(workflow_ids))
        if not wanted:
            return []

        async def run(conn: Connection) -> dict[str, WorkflowInstance]:
            return await _load(conn, wanted)

        found = await self.database.run(run, "get_workflows", transaction=False)
        return [found[i] for i in wanted if i in found]

    async def get_pointers(
        self, workflow_id: str, *, skip: int = 0, take: int = 100
    ) -> Page[ExecutionPointer]:
        """A page of the workflow's pointers, read by position (not the whole instance)."""
        skip = max(skip, 0)
        take = max(take, 0)

        async def run(conn: Connection) -> Page[ExecutionPointer]:
            cursor = await conn.execute(
                q.POINTER_PAGE, {"id": workflow_id, "skip": skip, "take": take}
            )
            rows = await cursor.fetchall()
            if not rows:
                raise WorkflowNotFoundError(workflow_id)
            total = rows[0][0]
            items = [
                _decode(dumps(_pointer(document, children)), ExecutionPointer)
                for _, _, document, children in rows
                if document is not None
            ]
            return Page(items=items, total=total, skip=skip, take=take)

        return await self.database.run(run, "get_pointers", transaction=False)

    async def get_runnable_instances(self, as_of: datetime) -> Sequence[str]:
        """Ids of runnable instances due at or before ``as_of``, earliest due first."""

        async def run(conn: Connection) -> list[str]:
            cursor = await conn.execute(q.DUE_WORKFLOWS, (as_of,))
            return [row[0] for row in await cursor.fetchall()]

        return await self.database.run(run, "get_runnable_instances", transaction=False)

    async def next_execution_time(self) -> datetime | None:
        """The earliest ``next_execution`` of a runnable instance, ``None`` when there is none."""

        async def run(conn: Connection) -> datetime | None:
            cursor = await conn.execute(q.NEXT_EXECUTION)
            row = await cursor.fetchone()
            return None if row is None else row[0]

        return await self.database.run(run, "next_execution_time", transaction=False)

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
        total count of matches (the page and the count from one snapshot)."""
        skip = max(skip, 0)
        take = max(take, 0)
        where, params = q.list_filter(
            None if status is None else WorkflowStatus(status).value, definition_id, reference
        )

        async def run(conn: Connection) -> Page[WorkflowInstance]:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor = await conn.execute(q.list_count(where), params)
            row = await cursor.fetchone()
            total = 0 if row is None else int(row[0])
            cursor = await conn.execute(q.list_page(where), (*params, take, skip))
            ids = [r[0] for r in await cursor.fetchall()]
            found = await _load(conn, ids) if ids else {}
            return Page(
                items=[found[i] for i in ids if i in found], total=total, skip=skip, take=take
            )

        return await self.database.run(run, "list_workflows")

    async def purge_workflows(
        self, *, older_than: datetime, statuses: Iterable[WorkflowStatus]
    ) -> int:
        """Delete instances in ``statuses`` completed before ``older_than`` with their
        pointers, subscriptions and errors (one statement); returns how many went."""
        wanted = sorted({WorkflowStatus(s).value for s in statuses})
        if not wanted:
            return 0

        async def run(conn: Connection) -> int:
            cursor = await conn.execute(q.PURGE, (wanted, older_than))
            row = await cursor.fetchone()
            return 0 if row is None else int(row[0])

        purged = await self.database.run(run, "purge_workflows", transaction=False)
        if purged:
            logger.debug("purged %d workflow instances", purged)
        return purged

    # -- events ----------------------------------------------------------------------------
    async def create_event(self, event: Event) -> None:
        """Store a new event (``ConcurrencyError`` when its id is already stored)."""
        columns = [arrays.array(column) for column in _event_columns([event])]
        inserted = await batcher_of(self.database).run(q.INSERT_EVENTS, columns, "create_event")
        if not inserted:
            raise ConcurrencyError(f"event {event.id} already exists")

    async def get_event(self, event_id: str) -> Event:
        """The stored event (``EventNotFoundError`` when unknown)."""

        async def run(conn: Connection) -> tuple[Any, ...] | None:
            cursor = await conn.execute(q.GET_EVENT, (event_id,))
            return await cursor.fetchone()

        row = await self.database.run(run, "get_event", transaction=False)
        if row is None:
            raise EventNotFoundError(event_id)
        # The column is the truth: marking an event (un)processed updates only the column.
        return _decode(row[0], Event, {"is_processed": bool(row[1])})

    async def get_runnable_events(self, as_of: datetime) -> Sequence[str]:
        """Ids of unprocessed events effective at or before ``as_of``, oldest first."""

        async def run(conn: Connection) -> list[str]:
            cursor = await conn.execute(q.DUE_EVENTS, (as_of,))
            return [row[0] for row in await cursor.fetchall()]

        return await self.database.run(run, "get_runnable_events", transaction=False)

    async def get_events(self, name: str, key: str, as_of: datetime) -> Sequence[str]:
        """Ids of events of ``name``/``key`` effective at or after ``as_of``, oldest first."""

        async def run(conn: Connection) -> list[str]:
            cursor = await conn.execute(q.MATCHING_EVENTS, (name, key, as_of))
            return [row[0] for row in await cursor.fetchall()]

        return await self.database.run(run, "get_events", transaction=False)

    async def mark_event_processed(self, event_id: str) -> None:
        """Flag the event processed (``EventNotFoundError`` when unknown)."""
        await self._set_processed(event_id, True)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        """Flag the event unprocessed again (``EventNotFoundError`` when unknown)."""
        await self._set_processed(event_id, False)

    async def _set_processed(self, event_id: str, processed: bool) -> None:
        marked = await batcher_of(self.database).run(
            q.SET_PROCESSED, (processed, event_id), "mark_event"
        )
        if not marked:
            raise EventNotFoundError(event_id)

    # -- subscriptions ---------------------------------------------------------------------
    async def create_subscription(self, subscription: EventSubscription) -> None:
        """Store a new subscription (``ConcurrencyError`` when its id is already stored)."""
        columns = [arrays.array(column) for column in _subscription_columns([subscription])]

        async def run(conn: Connection) -> None:
            cursor = await conn.execute(q.INSERT_SUBSCRIPTION, columns)
            if cursor.rowcount != 1:
                raise ConcurrencyError(f"subscription {subscription.id} already exists")

        await self.database.run(run, "create_subscription", transaction=False)

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        """The stored subscription (``SubscriptionNotFoundError`` when unknown)."""

        async def run(conn: Connection) -> tuple[Any, ...] | None:
            cursor = await conn.execute(q.GET_SUBSCRIPTION, (subscription_id,))
            return await cursor.fetchone()

        row = await self.database.run(run, "get_subscription", transaction=False)
        if row is None:
            raise SubscriptionNotFoundError(subscription_id)
        return _decode(row[0], EventSubscription, {"terminated": bool(row[1])})

    async def get_subscriptions(
        self, name: str, key: str, as_of: datetime
    ) -> Sequence[EventSubscription]:
        """Open subscriptions to ``name``/``key`` subscribed as of ``as_of`` or earlier,
        oldest ``subscribe_as_of`` first."""

        async def run(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(q.OPEN_SUBSCRIPTIONS, (name, key, as_of))
            return await cursor.fetchall()

        rows = await self.database.run(run, "get_subscriptions", transaction=False)
        return [
            _decode(document, EventSubscription, {"terminated": bool(terminated)})
            for document, terminated in rows
        ]

    async def terminate_subscription(self, subscription_id: str) -> None:
        """Close the subscription; closing a closed one is a no-op
        (``SubscriptionNotFoundError`` when unknown)."""

        async def run(conn: Connection) -> tuple[Any, ...] | None:
            cursor = await conn.execute(q.TERMINATE_SUBSCRIPTION, {"id": subscription_id})
            return await cursor.fetchone()

        row = await self.database.run(run, "terminate_subscription", transaction=False)
        if row is None or row[0] is None:
            raise SubscriptionNotFoundError(subscription_id)

    # -- external work -----------------------------------------------------------------------
    async def get_open_subscriptions(
        self, event_name: str, *, skip: int = 0, take: int = 100
    ) -> Sequence[EventSubscription]:
        """Open subscriptions to ``event_name`` (any key), oldest first, paged."""

        async def run(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(
                q.NAMED_OPEN_SUBSCRIPTIONS, (event_name, max(skip, 0), max(take, 0))
            )
            return await cursor.fetchall()

        rows = await self.database.run(run, "get_open_subscriptions", transaction=False)
        return [
            _decode(document, EventSubscription, {"terminated": bool(terminated)})
            for document, terminated in rows
        ]

    async def claim_subscription(
        self,
        event_name: str,
        *,
        token: str,
        worker_id: str,
        expires_at: datetime,
        as_of: datetime,
    ) -> EventSubscription | None:
        """Claim the oldest open, unclaimed (or lapsed) subscription to ``event_name`` (one
        transaction; the row is locked from its selection to its update)."""

        async def run(conn: Connection) -> EventSubscription | None:
            cursor = await conn.execute(
                q.CLAIMABLE_SUBSCRIPTION, {"name": event_name, "as_of": as_of, "token": token}
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            subscription_id, document, terminated = row
            subscription = _decode(document, EventSubscription, {"terminated": bool(terminated)})
            subscription.external_token = token
            subscription.external_worker_id = worker_id
            subscription.external_token_expiry = expires_at
            await conn.execute(
                q.SET_SUBSCRIPTION_DOCUMENT, (dumps(to_primitive(subscription)), subscription_id)
            )
            return subscription

        return await self.database.run(run, "claim_subscription", transaction=True)

    async def release_subscription_claim(self, subscription_id: str, token: str) -> bool:
        """Clear the claim when ``token`` is the current one."""

        async def run(conn: Connection) -> bool:
            cursor = await conn.execute(q.LOCK_SUBSCRIPTION, (subscription_id,))
            row = await cursor.fetchone()
            if row is None:
                raise SubscriptionNotFoundError(subscription_id)
            subscription = _decode(row[0], EventSubscription, {"terminated": bool(row[1])})
            if subscription.external_token != token:
                return False
            subscription.external_token = None
            subscription.external_worker_id = None
            subscription.external_token_expiry = None
            await conn.execute(
                q.SET_SUBSCRIPTION_DOCUMENT, (dumps(to_primitive(subscription)), subscription_id)
            )
            return True

        return await self.database.run(run, "release_subscription_claim", transaction=True)

    # -- errors ----------------------------------------------------------------------------
    async def get_errors(self, workflow_id: str) -> Sequence[ExecutionError]:
        """Errors recorded for ``workflow_id``, oldest first (empty for an unknown id)."""

        async def run(conn: Connection) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(q.WORKFLOW_ERRORS, (workflow_id,))
            return await cursor.fetchall()

        rows = await self.database.run(run, "get_errors", transaction=False)
        return [_decode(row[0], ExecutionError) for row in rows]
