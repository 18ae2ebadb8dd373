"""The reference model of :class:`~wfe_core.providers.PersistenceProvider`: the oracle the
persistence state machine compares every provider with.

Read it next to the contract (the docstrings of that class): each rule appears once, as plain
Python over plain dicts and lists. There are no indexes, no caches and no shortcuts:
every write stores the whole record, every query scans every record. It is slow on purpose, and
it imports nothing from :mod:`wfe_core.memory`, so it cannot share a bug with the product store
it checks.

Each record is kept as the JSON text a database would hold (the converter's primitives, dumped),
and every read decodes it again: what comes back is JSON's view of what was written (fresh
objects, ``data`` unstructured, times aware UTC). Dicts keep insertion order, which is the
order records were first stored in; sorts are stable, so equal keys keep that order.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from wfe_core.errors import (
    ConcurrencyError,
    EventNotFoundError,
    StaleLeaseError,
    SubscriptionNotFoundError,
    WorkflowNotFoundError,
)
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    Page,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.providers import capabilities as cap
from wfe_core.providers._persistence import PersistenceProvider, refuse_leased_writes
from wfe_core.serialization import from_primitive, to_primitive

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence
    from datetime import datetime

    from wfe_core.providers import PointerWrite
    from wfe_core.providers._lock import Lease, LeaseRequest

__all__ = ["ReferencePersistence"]

T = TypeVar("T")


def _text(value: Any) -> str:
    """``value`` as a database stores it: JSON text of its primitives."""
    return json.dumps(to_primitive(value))


def _read(text: str, cls: type[T]) -> T:
    """A fresh object read back from its stored text."""
    return from_primitive(json.loads(text), cls)


class ReferencePersistence(PersistenceProvider):
    """The persistence contract as plainly as it can be written (see the module docstring).

    Not for production: every query decodes every record. Every method runs without awaiting,
    so each call is atomic with respect to other tasks.
    """

    capabilities = frozenset({cap.FENCING, cap.EXTERNAL_WORK})

    def __init__(self) -> None:
        #: The whole instance (``revision`` and ``pointers`` included) as text, by id.
        self.instances: dict[str, str] = {}
        self.events: dict[str, str] = {}
        self.subscriptions: dict[str, str] = {}
        #: Every workflow's errors, in the order they were recorded.
        self.errors: list[str] = []
        #: The highest fence a write of each instance carried.
        self.fences: dict[str, int] = {}

    # -- reading every record --------------------------------------------------------------
    def _all_instances(self) -> list[WorkflowInstance]:
        return [_read(text, WorkflowInstance) for text in self.instances.values()]

    def _all_events(self) -> list[Event]:
        return [_read(text, Event) for text in self.events.values()]

    def _all_subscriptions(self) -> list[EventSubscription]:
        return [_read(text, EventSubscription) for text in self.subscriptions.values()]

    def _all_errors(self) -> list[ExecutionError]:
        return [_read(text, ExecutionError) for text in self.errors]

    # -- workflow instances ----------------------------------------------------------------
    async def create_workflow(
        self, instance: WorkflowInstance, *, lease: LeaseRequest | None = None
    ) -> Lease | None:
        # Rule: a store without ``leased-writes`` takes no ``lease``.
        if lease is not None:
            raise refuse_leased_writes(self)
        # Rule: an id is stored once.
        if instance.id in self.instances:
            raise ConcurrencyError(f"workflow {instance.id} already exists")
        # Rule: a new instance has revision 1, stored and set on the caller's object.
        self.instances[instance.id] = _text(attrs.evolve(instance, revision=1))
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
        # Rule: a store without ``leased-writes`` takes no ``release``.
        if release is not None:
            raise refuse_leased_writes(self)
        # Rule: unknown ids raise WorkflowNotFoundError.
        if instance.id not in self.instances:
            raise WorkflowNotFoundError(instance.id)
        # Rule (fencing): a fence below the highest accepted one refuses the write, before
        # (and whatever) the revision says; no fence is not checked.
        highest = self.fences.get(instance.id)
        if fence is not None and highest is not None and fence < highest:
            raise StaleLeaseError(
                f"workflow {instance.id}: fencing token {fence} is stale (accepted: {highest})"
            )
        # Rule: the write succeeds only when the stored revision is the caller's.
        stored_revision = _read(self.instances[instance.id], WorkflowInstance).revision
        if stored_revision != instance.revision:
            raise ConcurrencyError(
                f"workflow {instance.id}: revision {instance.revision} is stale "
                f"(stored: {stored_revision})"
            )
        # Rule: an event id already stored refuses the whole write.
        new_events = list(events)
        event_ids = [event.id for event in new_events]
        for event_id in event_ids:
            if event_id in self.events or event_ids.count(event_id) > 1:
                raise ConcurrencyError(f"event {event_id} already exists")
        # Rule: all or nothing. Every text is made before any is stored, so a value that
        # cannot be stored refuses the whole write.
        # Rule: skipping pointers not in ``changed_pointers`` is an optimisation a provider
        # may make, never a requirement: the model always stores the whole instance.
        new_revision = stored_revision + 1
        stored = attrs.evolve(instance, revision=new_revision)
        if pointer_write is not None:
            # Rule (a live part's write): the head, the named pointers at their positions
            # and the added ones after the stored ones; every other pointer as stored.
            pointers = _read(self.instances[instance.id], WorkflowInstance).pointers
            if pointer_write.stored_pointers != len(pointers):
                raise ValueError("pointer_write.stored_pointers is not the stored count")
            for position, pointer in pointer_write.changed:
                pointers[position] = pointer
            pointers.extend(pointer_write.added)
            stored.pointers = pointers
        instance_text = _text(stored)
        new_subscriptions = list(subscriptions)
        subscription_texts = [(sub.id, _text(sub)) for sub in new_subscriptions]
        error_texts = [_text(error) for error in errors]
        event_texts = [(event.id, _text(event)) for event in new_events]

        self.instances[instance.id] = instance_text
        # Rule (fencing): an accepted write's fence is the new highest when it is higher.
        if fence is not None and (highest is None or fence > highest):
            self.fences[instance.id] = fence
        # Rule: subscriptions are added, or replaced by id.
        self.subscriptions.update(subscription_texts)
        # Rule: errors are appended.
        self.errors.extend(error_texts)
        # Rule: events are stored as create_event stores them (a transactional outbox).
        self.events.update(event_texts)
        # Rule: an open subscription written here makes the earliest stored event it
        # matches (same name and key, effective at or after its as-of; by time, then publish
        # order) unprocessed again, in this same write, so the recovery sweep delivers an
        # event published before the subscription even when the writer dies before queueing
        # it. Only that one: it is the event the subscription gets.
        for subscription in new_subscriptions:
            if not subscription.terminated:
                matching = [
                    event
                    for event in self._all_events()
                    if event.name == subscription.event_name
                    and event.key == subscription.event_key
                    and event.time >= subscription.subscribe_as_of
                ]
                if matching:
                    earliest = min(matching, key=lambda event: event.time)
                    if earliest.is_processed:
                        self._set_processed(earliest.id, False)
        # Rule: the new revision is set on the caller's object.
        instance.revision = new_revision

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        if workflow_id not in self.instances:
            raise WorkflowNotFoundError(workflow_id)
        return _read(self.instances[workflow_id], WorkflowInstance)

    async def get_workflows(self, workflow_ids: Iterable[str]) -> Sequence[WorkflowInstance]:
        # Rule: unknown ids are left out (and each id is given once, in the order asked).
        found: list[WorkflowInstance] = []
        for workflow_id in workflow_ids:
            if workflow_id in self.instances and workflow_id not in [i.id for i in found]:
                found.append(_read(self.instances[workflow_id], WorkflowInstance))
        return found

    def _due(self, instance: WorkflowInstance) -> datetime | None:
        """When a runnable instance is due; ``None`` for one that is not runnable or has no
        due time."""
        if instance.status != WorkflowStatus.RUNNABLE:
            return None
        return instance.next_execution

    async def get_runnable_instances(self, as_of: datetime) -> Sequence[str]:
        # Rule: runnable, and due at or before ``as_of``; earliest due first.
        due = [
            (moment, instance.id)
            for instance in self._all_instances()
            if (moment := self._due(instance)) is not None and moment <= as_of
        ]
        return [workflow_id for _, workflow_id in sorted(due, key=lambda pair: pair[0])]

    async def next_execution_time(self) -> datetime | None:
        # Rule: the earliest due time of any runnable instance.
        times = [self._due(instance) for instance in self._all_instances()]
        return min((moment for moment in times if moment is not None), default=None)

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        skip: int = 0,
        take: int = 100,
    ) -> Page[WorkflowInstance]:
        # Rule: every given filter must match.
        matches = [
            instance
            for instance in self._all_instances()
            if (status is None or instance.status == status)
            and (definition_id is None or instance.definition_id == definition_id)
            and (reference is None or instance.reference == reference)
        ]
        # Rule: newest create_time first.
        matches.sort(key=lambda instance: instance.create_time, reverse=True)
        skip = max(skip, 0)
        take = max(take, 0)
        return Page(items=matches[skip : skip + take], total=len(matches), skip=skip, take=take)

    async def purge_workflows(
        self, *, older_than: datetime, statuses: Iterable[WorkflowStatus]
    ) -> int:
        # Rule: in ``statuses`` and finished before ``older_than``; their subscriptions and
        # errors go with them.
        wanted = {WorkflowStatus(status) for status in statuses}
        doomed = {
            instance.id
            for instance in self._all_instances()
            if instance.status in wanted
            and instance.complete_time is not None
            and instance.complete_time < older_than
        }
        for workflow_id in doomed:
            del self.instances[workflow_id]
        for subscription in self._all_subscriptions():
            if subscription.workflow_id in doomed:
                del self.subscriptions[subscription.id]
        self.errors = [
            text for text in self.errors if _read(text, ExecutionError).workflow_id not in doomed
        ]
        return len(doomed)

    # -- events ----------------------------------------------------------------------------
    async def create_event(self, event: Event) -> None:
        if event.id in self.events:
            raise ConcurrencyError(f"event {event.id} already exists")
        self.events[event.id] = _text(event)

    async def get_event(self, event_id: str) -> Event:
        if event_id not in self.events:
            raise EventNotFoundError(event_id)
        return _read(self.events[event_id], Event)

    async def get_runnable_events(self, as_of: datetime) -> Sequence[str]:
        # Rule: unprocessed, effective at or before ``as_of``; oldest first.
        runnable = [e for e in self._all_events() if not e.is_processed and e.time <= as_of]
        return [event.id for event in sorted(runnable, key=lambda event: event.time)]

    async def get_events(self, name: str, key: str, as_of: datetime) -> Sequence[str]:
        # Rule: of ``name`` and ``key``, effective at or after ``as_of``, processed or not;
        # oldest first.
        found = [
            event
            for event in self._all_events()
            if event.name == name and event.key == key and event.time >= as_of
        ]
        return [event.id for event in sorted(found, key=lambda event: event.time)]

    async def mark_event_processed(self, event_id: str) -> None:
        self._set_processed(event_id, True)

    async def mark_event_unprocessed(self, event_id: str) -> None:
        self._set_processed(event_id, False)

    def _set_processed(self, event_id: str, processed: bool) -> None:
        if event_id not in self.events:
            raise EventNotFoundError(event_id)
        event = _read(self.events[event_id], Event)
        self.events[event_id] = _text(attrs.evolve(event, is_processed=processed))

    # -- subscriptions ---------------------------------------------------------------------
    async def create_subscription(self, subscription: EventSubscription) -> None:
        if subscription.id in self.subscriptions:
            raise ConcurrencyError(f"subscription {subscription.id} already exists")
        self.subscriptions[subscription.id] = _text(subscription)

    async def get_subscription(self, subscription_id: str) -> EventSubscription:
        if subscription_id not in self.subscriptions:
            raise SubscriptionNotFoundError(subscription_id)
        return _read(self.subscriptions[subscription_id], EventSubscription)

    async def get_subscriptions(
        self, name: str, key: str, as_of: datetime
    ) -> Sequence[EventSubscription]:
        # Rule: open (not terminated), to ``name`` and ``key``, subscribed as of ``as_of`` or
        # earlier; oldest ``subscribe_as_of`` first.
        found = [
            subscription
            for subscription in self._all_subscriptions()
            if not subscription.terminated
            and subscription.event_name == name
            and subscription.event_key == key
            and subscription.subscribe_as_of <= as_of
        ]
        return sorted(found, key=lambda subscription: subscription.subscribe_as_of)

    async def terminate_subscription(self, subscription_id: str) -> None:
        # Rule: idempotent (closing a closed subscription changes nothing).
        subscription = await self.get_subscription(subscription_id)
        self.subscriptions[subscription_id] = _text(attrs.evolve(subscription, terminated=True))

    # -- external work -----------------------------------------------------------------------
    def _open(self, event_name: str) -> list[EventSubscription]:
        # Rule: open, to ``event_name`` (any key); oldest ``subscribe_as_of``, then creation.
        found = [
            subscription
            for subscription in self._all_subscriptions()
            if not subscription.terminated and subscription.event_name == event_name
        ]
        return sorted(found, key=lambda s: (s.subscribe_as_of, s.create_time))

    async def get_open_subscriptions(
        self, event_name: str, *, skip: int = 0, take: int = 100
    ) -> Sequence[EventSubscription]:
        skip, take = max(skip, 0), max(take, 0)
        return self._open(event_name)[skip : skip + take]

    async def claim_subscription(
        self,
        event_name: str,
        *,
        token: str,
        worker_id: str,
        expires_at: datetime,
        as_of: datetime,
    ) -> EventSubscription | None:
        # Rule: the oldest open one subscribed as of ``as_of``, unclaimed or whose claim
        # lapsed (expiry at or before ``as_of``), claimed in one step.
        for subscription in self._open(event_name):
            if subscription.subscribe_as_of > as_of:
                continue
            expiry = subscription.external_token_expiry
            if subscription.external_token is not None and (expiry is None or expiry > as_of):
                continue
            claimed = attrs.evolve(
                subscription,
                external_token=token,
                external_worker_id=worker_id,
                external_token_expiry=expires_at,
            )
            self.subscriptions[subscription.id] = _text(claimed)
            return _read(self.subscriptions[subscription.id], EventSubscription)
        return None

    async def release_subscription_claim(self, subscription_id: str, token: str) -> bool:
        # Rule: only the current token releases; the claim is cleared whole.
        subscription = await self.get_subscription(subscription_id)
        if subscription.external_token != token:
            return False
        self.subscriptions[subscription_id] = _text(
            attrs.evolve(
                subscription,
                external_token=None,
                external_worker_id=None,
                external_token_expiry=None,
            )
        )
        return True

    # -- errors ----------------------------------------------------------------------------
    async def get_errors(self, workflow_id: str) -> Sequence[ExecutionError]:
        # Rule: the workflow's errors, oldest first (none for an unknown id).
        mine = [error for error in self._all_errors() if error.workflow_id == workflow_id]
        return sorted(mine, key=lambda error: error.time)
