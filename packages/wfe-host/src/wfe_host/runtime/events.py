"""Delivering stored events to the subscriptions of waiting steps."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import attrs

from wfe_core.errors import (
    EventNotFoundError,
    SubscriptionNotFoundError,
    WorkflowNotFoundError,
)
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.providers import Lease, LivePart, PointerWrite, QueueName
from wfe_core.providers import capabilities as cap
from wfe_core.spi import SUBSCRIPTION_ID
from wfe_host.runtime.passes import Carried, Outcome

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wfe_core.models import Event, EventSubscription, ExecutionPointer
    from wfe_host.runtime.core import HostCore
    from wfe_host.runtime.passes import PassRunner

    #: Delivers an event of a name the runtime itself handles (before its subscriptions get
    #: it); False when it could not be done yet (try again later).
    SpecialHandler = Callable[[Event], Awaitable[bool]]

logger = logging.getLogger("wfe_host.events")

#: Seconds before retrying an event whose workflow another worker is running.
BUSY_RETRY = 0.5
#: Seconds between delivering an event and marking it processed (see _deliver_event).
_MARK_DELAY = 0.002
#: Concurrent deliveries of events by one host (from the queue, and of its own events).
EVENT_CONCURRENCY = 8


def _positioned(live: LivePart, pointer: ExecutionPointer) -> list[tuple[int, ExecutionPointer]]:
    """``pointer`` with its stored position when ``live`` is a live part (a write of one
    names its pointers by position); nothing for a whole instance."""
    return [] if live.whole else [(live.positions[pointer.id], pointer)]


@attrs.define(eq=False)
class _Prepared:
    """A workflow's lease and instance, taken for delivering an event to ``subscription_id``
    while the event was being stored (see EventDelivery.deliver_now)."""

    subscription_id: str
    lease: Lease
    #: The workflow's live part (see ``LivePart``); None: the workflow does not exist.
    live: LivePart | None
    #: Handed to the delivery (which releases or hands over the lease from then on).
    taken: bool = False
    #: The stored events the subscription matches (or why they could not be read), read
    #: once the event was stored; None when it was not.
    matching: Sequence[str] | BaseException | None = None


class EventDelivery:
    """Storing events and delivering them to subscriptions: the queue handler of
    ``QueueName.EVENT``, and the delivery of a host's own events without the queue."""

    def __init__(self, core: HostCore, passes: PassRunner) -> None:
        self.core = core
        self.passes = passes
        #: Handlers of the events the runtime handles itself, by event name (see handle).
        self.special: dict[str, SpecialHandler] = {}
        #: Events this host is delivering itself, right after storing them (see publish).
        self.local_deliveries = 0

    def handle(self, name: str, handler: SpecialHandler) -> None:
        """Have ``handler`` deliver the events named ``name`` (before their subscriptions)."""
        self.special[name] = handler

    async def publish(self, event: Event) -> str:
        """Store ``event`` and queue it for delivery (``publish_event``); returns its id.

        A host running workers delivers it at once itself, skipping the queue's round trip
        (beyond a few at a time, through the queue, whose consumers pace them). The delivery
        starts reading while the event is being stored, and writes nothing before it is."""
        core = self.core
        tg = core.worker_group()
        if tg is None or self.local_deliveries >= EVENT_CONCURRENCY:
            await core.persistence.create_event(event)
            await core.queue.enqueue(QueueName.EVENT, event.id)
            return event.id
        stored = Outcome()
        self.local_deliveries += 1
        tg.start_soon(self._deliver_own, event, stored)
        try:
            await core.persistence.create_event(event)
        except BaseException:
            stored.set(ok=False)
            raise
        stored.set(ok=True)
        return event.id

    async def _deliver_own(self, event: Event, stored: Outcome) -> None:
        try:
            await self.deliver_now(event, stored)
        finally:
            self.local_deliveries -= 1

    async def process(self, event_id: str) -> float | None:
        """Queue handler of ``QueueName.EVENT``: deliver ``event_id`` to every open matching
        subscription. ``None`` when done, else the delay before trying again."""
        lease = await self._lease(event_id)
        if lease is None:
            return BUSY_RETRY
        try:
            try:
                event = await self.core.persistence.get_event(event_id)
            except EventNotFoundError:
                return None
            return await self._deliver_event(event)
        finally:
            await self.passes.release(lease)

    async def deliver_now(self, event: Event, stored: Outcome) -> None:
        """Deliver an event this host is storing, here and now instead of through the queue
        (a crash meanwhile leaves it stored unprocessed: the recovery sweep delivers it). It
        reads the subscriptions while the event is being stored and changes nothing before
        ``stored`` says it was (not at all when it was not). When it cannot be done at once
        (a workflow is busy on another worker) or fails, the event goes to the queue, whose
        consumers retry with a back-off.

        It takes no lease on the event: nobody else knows of it yet, but for a copy queued by
        a subscription opening meanwhile (``requeue_for``), and delivering one event twice at
        once is harmless (each subscription is served under its workflow's lease, once).

        For the usual one subscription, it also takes the workflow's lease and reads the
        instance while the event is being stored (neither changes anything): on a database,
        the event's commit and the lease's run side by side instead of one after the other."""
        delay: float | None = BUSY_RETRY
        subscriptions: Sequence[EventSubscription] | None = None
        try:
            subscriptions = await self.core.persistence.get_subscriptions(
                event.name, event.key, event.time
            )
        except Exception:
            logger.exception("reading the subscriptions of event %s failed", event.id)
        prepared: _Prepared | None = None
        try:
            if (
                subscriptions is not None
                and len(subscriptions) == 1
                and event.name not in self.special
                and self._overlaps()
            ):
                prepared = await self._prepare(subscriptions[0], stored)
            if not await stored.wait():
                return
            if subscriptions is not None:
                try:
                    delay = await self._deliver_event(event, subscriptions, prepared)
                except Exception:
                    logger.exception("delivering event %s failed; it will be retried", event.id)
        finally:
            if prepared is not None and not prepared.taken:
                # Not used (the event was not stored, or was processed already).
                with anyio.CancelScope(shield=True):
                    await self.passes.release(prepared.lease)
        if delay is not None:
            with anyio.CancelScope(shield=True):
                await self.core.enqueue_event(event.id)

    def _overlaps(self) -> bool:
        """Whether to make a delivery's reads and writes side by side where they may be: when
        the store or the lock is a server over the network (each operation a round trip).
        In memory and on a SQLite file they take little waiting, and the extra tasks and the
        lease's write beside the event's cost more than they save (measured: SQLite's p50
        and CPU per event grew)."""
        core = self.core
        return cap.REMOTE in core.persistence.capabilities or cap.REMOTE in core.lock.capabilities

    async def _prepare(self, subscription: EventSubscription, stored: Outcome) -> _Prepared | None:
        """The lease and instance of ``subscription``'s workflow, taken while the event is
        being stored, and the stored events the subscription matches (see _earliest_for),
        read as soon as the event is stored, alongside. None when that cannot be done now
        (busy here or elsewhere, an error: the delivery then tries again the usual way, and
        says what failed)."""
        core, passes = self.core, self.passes
        workflow_id = subscription.workflow_id
        if workflow_id in passes.running:
            return None
        matching: list[Sequence[str] | BaseException] = []

        async def look() -> None:
            if not await stored.wait():
                return
            try:
                matching.append(
                    await core.persistence.get_events(
                        subscription.event_name,
                        subscription.event_key,
                        subscription.subscribe_as_of,
                    )
                )
            except Exception as error:  # raised by the delivery, which holds the lease then
                matching.append(error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            try:
                lease = await core.lock.acquire(
                    workflow_id, owner=passes.owner(), ttl=core.options.lease_seconds
                )
            except Exception:
                lease = None
            if lease is None:
                tg.cancel_scope.cancel()
                return None
            try:
                live: LivePart | None = await core.load_live(workflow_id)
            except WorkflowNotFoundError:
                live = None
            except Exception:
                tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await passes.release(lease)
                return None
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await passes.release(lease)
                raise
            prepared = _Prepared(subscription.id, lease, live)
        prepared.matching = matching[0] if matching else None
        return prepared

    async def _lease(self, event_id: str) -> Lease | None:
        return await self.core.lock.acquire(
            f"event:{event_id}", owner=self.passes.owner(), ttl=self.core.options.lease_seconds
        )

    async def _deliver_event(
        self,
        event: Event,
        subscriptions: Sequence[EventSubscription] | None = None,
        prepared: _Prepared | None = None,
    ) -> float | None:
        """Deliver ``event`` (holding its lease) to every open matching subscription (those
        given, when the caller has just read them; with the lease and instance of one of
        them when ``prepared``)."""
        persistence = self.core.persistence
        if event.is_processed:
            return None
        special = self.special.get(event.name)
        if special is not None and not await special(event):
            return BUSY_RETRY
        if subscriptions is None:
            subscriptions = await persistence.get_subscriptions(event.name, event.key, event.time)
        seen: set[str] = set()
        while True:
            busy = deferred = False
            for subscription in subscriptions:
                seen.add(subscription.id)
                delivered = await self._deliver(subscription, event, prepared)
                busy = busy or delivered is False
                deferred = deferred or delivered is None
            if busy:
                return BUSY_RETRY
            if deferred:
                return None
            # Bookkeeping that nothing waits for: let the passes just handed the resumed
            # workflows run their first step and store it first, rather than wait behind it.
            # Shielded, so a host stopping meanwhile still marks what it delivered.
            with anyio.CancelScope(shield=True):
                await anyio.sleep(_MARK_DELAY)
                await persistence.mark_event_processed(event.id)
            # A subscription opened meanwhile had the event marked unprocessed and queued
            # again (requeue_for), maybe before the mark above overwrote that: look again
            # now the mark is stored. One opened after this look is requeued after it.
            subscriptions = [
                s
                for s in await persistence.get_subscriptions(event.name, event.key, event.time)
                if s.id not in seen
            ]
            if not subscriptions:
                return None
            await persistence.mark_event_unprocessed(event.id)

    async def _deliver(
        self, subscription: EventSubscription, event: Event, prepared: _Prepared | None = None
    ) -> bool | None:
        """True: done with this subscription; None: deferred until this host's pass over the
        workflow ends; False: another worker holds the workflow, try again later."""
        core, passes = self.core, self.passes
        loaded: LivePart | None = None
        use = (
            prepared is not None
            and not prepared.taken
            and prepared.subscription_id == subscription.id
        )
        if prepared is not None and use:
            prepared.taken = True
            lease: Lease | None = prepared.lease
            loaded = prepared.live
            matching: Sequence[str] | BaseException | None = prepared.matching
        else:
            handle = passes.running.get(subscription.workflow_id)
            if handle is not None:

                async def again() -> None:
                    await core.queue.enqueue(QueueName.EVENT, event.id)

                handle.after.append(again)
                return None
            if self._overlaps():
                lease, matching = await self._lease_and_matches(subscription)
            else:
                lease = await core.lock.acquire(
                    subscription.workflow_id, owner=passes.owner(), ttl=core.options.lease_seconds
                )
                matching = None  # read once the workflow is found waiting
        if lease is None:
            return False
        handed = resume = False
        try:
            if isinstance(matching, BaseException):
                raise matching
            try:
                # Its live part: a delivery reads and writes the same however many steps the
                # workflow ran before the wait (the waiting pointer is active, so held).
                if not use:
                    live = await core.load_live(subscription.workflow_id)
                elif loaded is None:
                    raise KeyError(subscription.workflow_id)  # not found when prepared
                else:
                    live = loaded
                instance = live.instance
                pointer = instance.pointer(subscription.pointer_id)
            except (WorkflowNotFoundError, KeyError):
                await self._close(subscription.id)
                return True
            waiting = (
                not instance.status.is_finished
                and pointer.active
                and pointer.status == PointerStatus.WAITING_FOR_EVENT
                and not pointer.event_published
                and pointer.extensions.get(SUBSCRIPTION_ID) == subscription.id
            )
            if not waiting:
                await self._close(subscription.id)
                return True
            if matching is None:  # not read yet
                matching = await core.persistence.get_events(
                    subscription.event_name, subscription.event_key, subscription.subscribe_as_of
                )
            event = await self._earliest_for(event, matching)
            telemetry = core.telemetry
            with (
                contextlib.nullcontext()
                if telemetry is None
                else telemetry.event_delivery(event, instance)
            ):
                pointer.event_published = True
                pointer.event_data = event.data
                pointer.extensions["event_id"] = event.id
                pointer.extensions.pop(SUBSCRIPTION_ID, None)
                resume = instance.status == WorkflowStatus.RUNNABLE
                if resume:
                    instance.next_execution = core.clock.now()
                # The subscription is closed by the same write (stored again, terminated).
                closed = attrs.evolve(subscription, terminated=True)
                changed = _positioned(live, pointer)
                carried = Carried([closed], [pointer.id], changed) if resume else None
                if carried is not None and passes.hand_over(live, lease, carried):
                    # The resumed pass takes the lease and stores the delivery with its first
                    # write (one write less before the step after the wait runs). The event
                    # may be marked processed only once that write is done.
                    handed = True
                    if not await carried.stored.wait():
                        return False  # the pass failed before storing it: deliver it again
                else:
                    await core.store(
                        instance,
                        subscriptions=[closed],
                        changed_pointers=[pointer.id],
                        fence=lease.token,
                        pointer_write=(
                            None
                            if live.whole
                            else PointerWrite(
                                live.stored_pointers, changed, children_start=live.children_start
                            )
                        ),
                    )
            logger.info(
                "event %s/%s delivered",
                event.name,
                event.key,
                extra={"workflow_id": instance.id, "pointer_id": pointer.id},
            )
            return True
        finally:
            if not handed:
                # Queued after the release: a pass dequeued while the lease is still held
                # would find the instance busy and wait for its retry.
                await passes.release(lease)
                if resume:
                    await core.enqueue_workflow(subscription.workflow_id)

    async def _lease_and_matches(
        self, subscription: EventSubscription
    ) -> tuple[Lease | None, Sequence[str] | BaseException]:
        """The workflow's lease for the delivery to ``subscription``, and the stored events
        it matches (see _earliest_for), read while the lease is being taken: on a database,
        one round trip less before the resumed step runs. The read needs no lease (events
        are not the workflow's state) and is made once the event is stored. Its error is
        returned, not raised, so the caller releases a lease it got."""
        core, persistence = self.core, self.core.persistence
        matching: list[Sequence[str] | BaseException] = []

        async def look() -> None:
            try:
                matching.append(
                    await persistence.get_events(
                        subscription.event_name,
                        subscription.event_key,
                        subscription.subscribe_as_of,
                    )
                )
            except Exception as error:  # raised by the caller, which holds the lease then
                matching.append(error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            lease = await core.lock.acquire(
                subscription.workflow_id, owner=self.passes.owner(), ttl=core.options.lease_seconds
            )
        return lease, matching[0]

    async def _earliest_for(self, event: Event, matching: Sequence[str]) -> Event:
        """The event the subscription gets: the earliest stored one it matches (``matching``:
        by effective time, then publish order), which need not be ``event``. Stored events
        reach the queue in no particular order (a new subscription re-queues every match at
        once), so whichever of them is processed first hands over the earliest."""
        if not matching or matching[0] == event.id:
            return event
        try:
            return await self.core.persistence.get_event(matching[0])
        except EventNotFoundError:  # purged meanwhile
            return event

    async def _close(self, subscription_id: str) -> None:
        with contextlib.suppress(SubscriptionNotFoundError):
            await self.core.persistence.terminate_subscription(subscription_id)
