"""The persistence contract: workflow instances, events, subscriptions and errors."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from wfe_core.models import ExecutionPointer, WorkflowInstance
from wfe_core.providers._base import Provider

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from datetime import datetime

    from wfe_core.models import (
        Event,
        EventSubscription,
        ExecutionError,
        Page,
        WorkflowStatus,
    )
    from wfe_core.providers._lock import Lease, LeaseRequest, LockProvider


@attrs.define(eq=False)
class LivePart:
    """What a pass reads of an instance (:meth:`PersistenceProvider.get_live_part`).

    ``instance`` has the whole head (``data`` included) and, in ``pointers``, some of the
    stored pointers in their stored order: every active one at least, each whole but,
    maybe, its ``children``. ``whole``: they are every stored pointer, each whole (the
    default read). Otherwise ``positions`` gives the stored position of each pointer in
    ``instance.pointers`` and ``stored_pointers`` how many pointers are stored, and a write
    of it passes a :class:`PointerWrite`.

    ``children_start`` (never with ``whole``): the pointers whose ``children`` hold only
    their last stored ids, by id, each with how many ids were left out before them (the
    position, in the stored list, of ``children[0]``); the stored child count is that plus
    ``len(children)``. A partial list always holds the last stored id (the engine looks at
    a container's last child, and appends). A loop's container gets a child per round, so
    a store that reads them all makes round 10,000 read 10,000 ids; one that leaves them
    out reads the same at round 10,000 as at round 10. Pointers not named hold all their
    ids.
    """

    instance: WorkflowInstance
    stored_pointers: int
    positions: dict[str, int] = attrs.field(factory=dict)
    whole: bool = False
    children_start: dict[str, int] = attrs.field(factory=dict)

    @classmethod
    def of_whole(cls, instance: WorkflowInstance) -> LivePart:
        """The live part that is the whole ``instance``."""
        return cls(instance, len(instance.pointers), whole=True)


@attrs.define(eq=False)
class PointerWrite:
    """The pointers a write of a :class:`LivePart` stores (``persist_workflow(...,
    pointer_write=)``), named by position, so that the store need not look at
    ``instance.pointers`` (which holds only some of them).

    ``changed``: stored pointers that may have changed, with their stored positions (each
    whole but, maybe, its ``children``; a pointer's ``children`` only grew by appending
    since it was stored). ``added``: new pointers, stored at positions ``stored_pointers``,
    ``stored_pointers + 1`` ... in order, each whole. ``stored_pointers`` is how many
    pointers the writer knows stored: the store's count (the revision check makes sure it
    is).

    ``children_start``: the pointers of ``changed`` whose ``children`` hold only their last
    ids (as the live part gave them: :attr:`LivePart.children_start`, the ids appended
    since after them), by id, each with how many stored ids were left out before
    ``children[0]``. The stored ids from that position on are a prefix of ``children``:
    the store appends the ones past its stored count, and never reads or writes the ones
    left out (a ``children`` shorter than the stored ids past the start is the caller's
    error: ``ValueError``, nothing stored).
    """

    stored_pointers: int
    changed: Sequence[tuple[int, ExecutionPointer]] = ()
    added: Sequence[ExecutionPointer] = ()
    children_start: Mapping[str, int] = attrs.field(factory=dict)


class PersistenceProvider(Provider):
    """Durable store of everything the engine needs to resume after a restart.

    Rules every implementation keeps (checked by ``wfe_core.testing.PersistenceSuite``):

    * Instances come back equal to what was stored, except ``data``, which comes back in its
      unstructured (JSON-compatible) form; the host restores the definition's data type.
      Stored objects never share state with the caller's objects.
    * :meth:`persist_workflow` is atomic and optimistic: it succeeds only when the stored
      ``revision`` equals ``instance.revision``, then stores ``revision + 1`` and sets it on
      ``instance``; otherwise it raises :class:`~wfe_core.errors.ConcurrencyError` and stores
      nothing. The subscriptions, errors and events passed with it are written in the same
      transaction (a refused write stores none of them).
    * Fencing (providers declaring the ``fencing`` capability, checked by the suite for them):
      the store keeps, per instance, the highest ``fence`` (a :attr:`Lease.token
      <wfe_core.providers.Lease.token>`) it has accepted. :meth:`persist_workflow` with a
      ``fence`` lower than that raises :class:`~wfe_core.errors.StaleLeaseError` and stores
      nothing, checked atomically with the revision (same statement or transaction); an
      accepted write with a ``fence`` stores it as the new highest. ``fence=None`` skips the
      check (a write not made under a lease). A store without the capability ignores
      ``fence`` and relies on the revision check alone.
    * Unknown ids raise the matching ``*NotFoundError`` from :mod:`wfe_core.errors`.
    * Times are timezone-aware UTC datetimes, stored with at least millisecond precision.
    * The write contract (see :meth:`persist_workflow`): what a write must store is the whole
      instance as the caller holds it; with ``changed_pointers`` it may skip every pointer not
      named there, and of a named pointer's ``children`` the ids it stored before. A provider
      built on that stores, per step, what the step changed, not the whole history.
    * The live part (see :meth:`get_live_part`): a pass reads the head and the active
      pointers only, and writes them back with a :class:`PointerWrite`, so a pass costs the
      same at round 10,000 of a loop as at round 10. The default reads the whole instance
      (and a store returning it never gets a ``pointer_write``).
    * External work (providers declaring the ``external-work`` capability): open
      subscriptions can be listed by event name and claimed by external workers, atomically
      (:meth:`get_open_subscriptions`, :meth:`claim_subscription`,
      :meth:`release_subscription_claim`). Activities and user tasks are built on them. These
      methods are not abstract: a provider written before them keeps working for everything
      else, and the defaults raise :class:`~wfe_core.errors.UnsupportedOperationError`
      naming the capability.
    * Leased writes (providers declaring the ``leased-writes`` capability, checked by the
      suite for them): a store that keeps a lock provider's leases in its own database takes
      and releases them in its writes, for the lock :meth:`shares_leases_with` accepts
      (``create_workflow(lease=)``, ``persist_workflow(release=)``). A host uses them only
      when that method says yes; every other store never gets those arguments.
    """

    def shares_leases_with(self, lock: LockProvider) -> bool:
        """Whether this store can take and release ``lock``'s leases in its own writes: the
        lock keeps its leases in this store's database, in the way this provider reads and
        writes them (in practice: the same package's lock, on the same database). The
        default (and any provider without ``leased-writes``): ``False``. Asked once the
        providers are open; the answer must hold while they are."""
        return False

    # -- workflow instances ----------------------------------------------------------------
    @abstractmethod
    async def create_workflow(
        self, instance: WorkflowInstance, *, lease: LeaseRequest | None = None
    ) -> Lease | None:
        """Store a new instance (its ``id`` is already set; ``revision`` becomes 1).
        :class:`~wfe_core.errors.ConcurrencyError` when the id is already stored.

        ``lease`` (capability ``leased-writes``; only for a lock :meth:`shares_leases_with`
        accepted): also take the lease of ``instance.id`` for ``lease.owner`` for
        ``lease.ttl`` seconds in the same transaction, as that lock's ``acquire`` would (a
        fresh, larger token), store its token as the instance's fence, and return the lease.
        When another holds the key, store nothing and return ``None`` (whether or not the id
        is stored); when the id is stored, raise ``ConcurrencyError`` and hold no lease.
        Without ``lease``: ``None``. A provider without the capability raises
        :class:`~wfe_core.errors.UnsupportedOperationError` when given one."""

    @abstractmethod
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
        """Write ``instance`` (checking its revision, and its ``fence``) with new
        subscriptions, errors and events, all or nothing.

        ``fence`` is the :attr:`Lease.token <wfe_core.providers.Lease.token>` the writer holds
        on ``instance.id`` (``None``: not written under a lease; not checked). A store with the
        ``fencing`` capability keeps the highest fence it accepted per instance; a write whose
        ``fence`` is lower raises :class:`~wfe_core.errors.StaleLeaseError` (a
        :class:`~wfe_core.errors.ConcurrencyError`) and stores nothing; an equal or higher
        one is accepted (revision permitting) and a higher one becomes the new highest. The
        fence is checked in the same statement or transaction as the revision, so no write
        can slip in between. When both are stale, ``StaleLeaseError`` is raised.

        ``release`` (capability ``leased-writes``; only a lease of ``instance.id`` from a lock
        :meth:`shares_leases_with` accepted): the writer's last write under that lease. The
        write is fenced by ``release.token`` (``fence`` is ignored), is stored only while
        ``release`` is the key's current lease (the check of the lock's ``release``: same
        token and owner, not expired), and frees the key in the same transaction: both or
        neither. A lease that is not current refuses the write with
        :class:`~wfe_core.errors.LockNotHeldError`, storing nothing (so a write under a lost
        lease never lands, even before a newer holder wrote); a stale fence or revision
        refuses it as without ``release`` (``StaleLeaseError`` first, then
        ``ConcurrencyError``) and keeps the lease. A provider without the capability raises
        :class:`~wfe_core.errors.UnsupportedOperationError` when given one.

        What a write must store, and what it may skip (the write contract; checked by
        ``PersistenceSuite``):

        * It must store the head of the instance (every field but ``pointers``, ``data``
          included) and the new ``revision``, always.
        * ``changed_pointers=None`` (what every caller but the executor passes): any pointer
          may have changed, been added, or (rarely) been removed; the stored pointers must
          become exactly ``instance.pointers``, in order.
        * ``changed_pointers`` given: it names every pointer that may differ from the stored
          instance, new ones included (the executor passes the pointers its pass changed since
          its last write). The write must store the named pointers and the ones past the
          stored count, and may skip every other one: a provider that stores pointers apart
          (rows, or one text each) writes only those, so a step costs the same to store at
          step 10,000 as at step 1. The caller keeps two promises then: pointers are only
          appended (never removed or reordered), and a pointer's ``children`` only grow by
          appending, so a provider may store only the ids past the ones it stored before
          (a container that started its 10,000th branch stores one id, not 10,000).
        * A provider that cannot rely on what it stored (it did not write the stored revision
          itself, or lost track) writes the whole instance: skipping is an optimisation a
          provider may make, never a requirement.
        * ``pointer_write`` given (only ever for an instance read by a :meth:`get_live_part`
          that was not ``whole``, so a provider whose read always is never gets one):
          ``instance.pointers`` holds only some of the pointers and must not be stored as
          they are. The write stores the head, the pointers of ``pointer_write.changed`` at
          their positions (of their ``children``, the ids past the ones stored) and appends
          ``pointer_write.added``; every other stored pointer stays as it is, and
          ``changed_pointers`` is to be ignored. A ``stored_pointers`` that is not the stored
          count is the caller's error (``ValueError``, nothing stored). A pointer named in
          ``pointer_write.children_start`` holds only its last child ids: the ids left out
          stay as stored, and the ones past the stored count are appended.

        ``events`` are stored as :meth:`create_event` stores them, in the same transaction as
        the instance: a transactional outbox. The engine uses it for notifications that must
        not be lost when the process dies right after the write (a finished child telling its
        parent); it queues them after the write, and stored unprocessed events are queued
        again at start-up, so a crash in between delays them but never loses them. An event
        whose id is already stored refuses the whole write
        (:class:`~wfe_core.errors.ConcurrencyError`).

        ``subscriptions`` are added, or replaced by id. Each one that is not ``terminated``
        also marks **unprocessed**, in the same transaction, the earliest stored event it
        matches (same ``event_name`` and ``event_key``, ``time`` at or after its
        ``subscribe_as_of``; earliest by ``time``, then publish order: the event the
        subscription gets) when that one is processed: an event published before the
        subscription existed, delivered to nobody, then reaches the recovery sweep even when
        the process dies before queueing it. Only that one, so the write costs the same
        however many events of its key are stored. A refused write reopens nothing. The
        reopen must not lose to a :meth:`mark_event_processed` of that event running at the
        same time (a delivery that found no subscription yet, which looks again after its
        mark): either the event ends unprocessed, or the mark waits until this write's
        subscription is visible. Do not skip the reopen because the event looks unprocessed
        in a snapshot taken before such a mark committed."""

    @abstractmethod
    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance."""

    async def get_live_part(self, workflow_id: str) -> LivePart:
        """What a pass needs of the stored instance: its head and, at least, its active
        pointers, each whole (but, maybe, the first ids of its ``children``: see
        :attr:`LivePart.children_start`), with their stored positions and the stored
        pointer count (:class:`LivePart`); ``WorkflowNotFoundError`` for an unknown id.

        A pass looks at no finished pointer but in rare cases (a failure, a compensation,
        the workflow's end, a step whose body reads history), and then reads them with
        :meth:`get_pointers`; so a store that reads only the active pointers makes a pass
        cost the same however many rounds a loop ran before. That store must take
        :meth:`persist_workflow`'s ``pointer_write``. Who reads a live pointer's
        ``children``: the engine looks at a container's last child id and appends new ones;
        the engine's own containers read none; any other step body (``ctx.pointer``) gets
        them all (the pass reads the whole instance before running it, as for
        ``StepBody.reads_history``). So a store may leave out a container's first ids
        (``children_start``), keeping at least the last; then its write must take
        ``pointer_write.children_start``. It may return more than the active
        pointers, or the whole instance (``whole=True``: then the pass writes as ever),
        whenever reading less would cost more (say it does not know which pointers are
        active without reading them all).

        This default reads the whole instance (``LivePart.of_whole``)."""
        return LivePart.of_whole(await self.get_workflow(workflow_id))

    async def get_pointers(
        self, workflow_id: str, *, skip: int = 0, take: int = 100
    ) -> Page[ExecutionPointer]:
        """A page of the workflow's pointers, in order: ``take`` of them from position ``skip``
        on, with ``total``, the count of all its pointers (for CLIs and UIs showing long
        histories). ``WorkflowNotFoundError`` for an unknown id.

        This default reads the whole instance; a provider storing pointers apart reads only
        the page."""
        from wfe_core.models import Page

        instance = await self.get_workflow(workflow_id)
        skip = max(skip, 0)
        take = max(take, 0)
        return Page(
            items=instance.pointers[skip : skip + take],
            total=len(instance.pointers),
            skip=skip,
            take=take,
        )

    @abstractmethod
    async def get_workflows(self, workflow_ids: Iterable[str]) -> Sequence[WorkflowInstance]:
        """The stored instances among ``workflow_ids`` (unknown ids are left out)."""

    @abstractmethod
    async def get_runnable_instances(self, as_of: datetime) -> Sequence[str]:
        """Ids of runnable instances whose ``next_execution`` is at or before ``as_of``."""

    @abstractmethod
    async def next_execution_time(self) -> datetime | None:
        """The earliest ``next_execution`` of any runnable instance (drives the scheduler)."""

    @abstractmethod
    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        skip: int = 0,
        take: int = 100,
    ) -> Page[WorkflowInstance]:
        """Instances matching every given filter, newest ``create_time`` first."""

    @abstractmethod
    async def purge_workflows(
        self, *, older_than: datetime, statuses: Iterable[WorkflowStatus]
    ) -> int:
        """Delete instances in ``statuses`` finished (``complete_time``) before ``older_than``,
        with their subscriptions and errors. Returns how many instances were deleted."""

    # -- events ----------------------------------------------------------------------------
    @abstractmethod
    async def create_event(self, event: Event) -> None:
        """Store a new event."""

    @abstractmethod
    async def get_event(self, event_id: str) -> Event:
        """The stored event."""

    @abstractmethod
    async def get_runnable_events(self, as_of: datetime) -> Sequence[str]:
        """Ids of unprocessed events whose ``time`` is at or before ``as_of``, oldest first."""

    @abstractmethod
    async def get_events(self, name: str, key: str, as_of: datetime) -> Sequence[str]:
        """Ids of events of ``name`` and ``key`` whose ``time`` is at or after ``as_of``,
        processed or not, oldest first (lets a new subscription see earlier events)."""

    @abstractmethod
    async def mark_event_processed(self, event_id: str) -> None: ...

    @abstractmethod
    async def mark_event_unprocessed(self, event_id: str) -> None: ...

    # -- subscriptions ---------------------------------------------------------------------
    @abstractmethod
    async def create_subscription(self, subscription: EventSubscription) -> None:
        """Store a subscription on its own (the engine usually passes them to
        :meth:`persist_workflow`)."""

    @abstractmethod
    async def get_subscription(self, subscription_id: str) -> EventSubscription: ...

    @abstractmethod
    async def get_subscriptions(
        self, name: str, key: str, as_of: datetime
    ) -> Sequence[EventSubscription]:
        """Open (not terminated) subscriptions to ``name``/``key`` whose ``subscribe_as_of``
        is at or before ``as_of``, oldest first."""

    @abstractmethod
    async def terminate_subscription(self, subscription_id: str) -> None:
        """Close a subscription (it matches no more events). Idempotent."""

    # -- external work (capability ``external-work``) -------------------------------------
    async def get_open_subscriptions(
        self, event_name: str, *, skip: int = 0, take: int = 100
    ) -> Sequence[EventSubscription]:
        """Open (not terminated) subscriptions to ``event_name``, of any key, claimed or not,
        oldest first (``subscribe_as_of``, then creation): ``take`` of them from position
        ``skip`` on. Lists the user tasks waiting for an answer."""
        raise _unsupported(self, "get_open_subscriptions")

    async def claim_subscription(
        self,
        event_name: str,
        *,
        token: str,
        worker_id: str,
        expires_at: datetime,
        as_of: datetime,
    ) -> EventSubscription | None:
        """Claim the oldest claimable subscription to ``event_name`` (any key) for an
        external worker, atomically: of two concurrent calls (in any processes sharing the
        store) never both get the same subscription.

        Claimable: open (not terminated), ``subscribe_as_of`` at or before ``as_of``, and not
        claimed, or claimed with an ``external_token_expiry`` at or before ``as_of`` (the
        claim lapsed: its worker died or gave up). Oldest: ``subscribe_as_of``, then
        creation. The claim stores ``external_token=token``, ``external_worker_id`` and
        ``external_token_expiry=expires_at`` on the subscription and returns it as stored
        now; ``None`` when nothing is claimable."""
        raise _unsupported(self, "claim_subscription")

    async def release_subscription_claim(self, subscription_id: str, token: str) -> bool:
        """Clear the claim of ``subscription_id`` (token, worker and expiry back to
        ``None``) when ``token`` is its current ``external_token``, so another worker can
        claim it at once; ``False``, changing nothing, when it is not (the claim lapsed and
        was taken again, or was released). ``SubscriptionNotFoundError`` for an unknown
        id."""
        raise _unsupported(self, "release_subscription_claim")

    # -- errors ----------------------------------------------------------------------------
    @abstractmethod
    async def get_errors(self, workflow_id: str) -> Sequence[ExecutionError]:
        """Errors recorded for ``workflow_id``, oldest first."""


def refuse_leased_writes(provider: PersistenceProvider) -> Exception:
    """What a store without ``leased-writes`` raises when given ``lease`` or ``release``."""
    from wfe_core.errors import UnsupportedOperationError

    return UnsupportedOperationError(
        f"the persistence provider {type(provider).__module__}.{type(provider).__qualname__} "
        "cannot take or release leases in its writes (capability 'leased-writes')"
    )


#: Pointers :func:`stored_pointers` reads per page.
_PAGE = 1000


async def stored_pointers(
    persistence: PersistenceProvider, workflow_id: str, count: int
) -> list[ExecutionPointer]:
    """The first ``count`` stored pointers of ``workflow_id``, in order, read a page at a
    time (:meth:`PersistenceProvider.get_pointers`): what a pass over a :class:`LivePart`
    reads when it needs the finished pointers too."""
    pointers: list[ExecutionPointer] = []
    while len(pointers) < count:
        page = await persistence.get_pointers(
            workflow_id, skip=len(pointers), take=min(_PAGE, count - len(pointers))
        )
        if not page.items:
            break
        pointers.extend(page.items)
    return pointers


def _unsupported(provider: PersistenceProvider, method: str) -> Exception:
    from wfe_core.errors import UnsupportedOperationError

    return UnsupportedOperationError(
        f"the persistence provider {type(provider).__module__}.{type(provider).__qualname__} "
        f"does not implement {method}() (capability 'external-work'): activities and user "
        "tasks need a store that has it (memory, sqlite and postgres do)"
    )
