"""Delivering stored events to the subscriptions of waiting steps."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import anyio
import attrs

from wfe_core.errors import (
    EventNotFoundError,
    SubscriptionNotFoundError,
    WorkflowNotFoundError,
)
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.primitives import TERMINATE_CHILD_EVENT
from wfe_core.providers import QueueName
from wfe_core.spi import SUBSCRIPTION_ID, utcnow
from wfe_host.runtime.passes import Carried, Outcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wfe_core.models import Event, EventSubscription
    from wfe_core.providers import Lease
    from wfe_host.host import WorkflowHost

logger = logging.getLogger("wfe_host.events")

#: Seconds before retrying an event whose workflow another worker is running.
BUSY_RETRY = 0.5
#: Seconds between delivering an event and marking it processed (see _deliver_event).
_MARK_DELAY = 0.002


class EventDelivery:
    """Queue handler of ``QueueName.EVENT`` and the re-queueing of stored events."""

    def __init__(self, host: WorkflowHost) -> None:
        self.host = host

    async def requeue_for(self, subscription: EventSubscription) -> None:
        """Queue again the stored events a new subscription should see, so an event
        published before the subscription existed is not lost."""
        persistence = self.host.persistence
        for event_id in await persistence.get_events(
            subscription.event_name, subscription.event_key, subscription.subscribe_as_of
        ):
            await persistence.mark_event_unprocessed(event_id)
            await self.host.queue.enqueue(QueueName.EVENT, event_id)

    async def process(self, event_id: str) -> float | None:
        """Queue handler of ``QueueName.EVENT``: deliver ``event_id`` to every open matching
        subscription. ``None`` when done, else the delay before trying again."""
        host = self.host
        lease = await self._lease(event_id)
        if lease is None:
            return BUSY_RETRY
        try:
            try:
                event = await host.persistence.get_event(event_id)
            except EventNotFoundError:
                return None
            return await self._deliver_event(event)
        finally:
            await host.passes._release(lease)

    async def deliver_now(self, event: Event, stored: Outcome) -> None:
        """Deliver an event this host is storing, here and now instead of through the queue
        (a crash meanwhile leaves it stored unprocessed: the recovery sweep delivers it). It
        reads the subscriptions while the event is being stored and changes nothing before
        ``stored`` says it was (not at all when it was not). When it cannot be done at once
        (a workflow is busy on another worker) or fails, the event goes to the queue, whose
        consumers retry with a back-off.

        It takes no lease on the event: nobody else knows of it yet, but for a copy queued by
        a subscription opening meanwhile (``requeue_for``), and delivering one event twice at
        once is harmless (each subscription is served under its workflow's lease, once)."""
        delay: float | None = BUSY_RETRY
        subscriptions: Sequence[EventSubscription] | None = None
        try:
            subscriptions = await self.host.persistence.get_subscriptions(
                event.name, event.key, event.time
            )
        except Exception:
            logger.exception("reading the subscriptions of event %s failed", event.id)
        if not await stored.wait():
            return
        if subscriptions is not None:
            try:
                delay = await self._deliver_event(event, subscriptions)
            except Exception:
                logger.exception("delivering event %s failed; it will be retried", event.id)
        if delay is not None:
            with anyio.CancelScope(shield=True):
                await self.host._enqueue_stored_event(event.id)

    async def _lease(self, event_id: str) -> Lease | None:
        host = self.host
        return await host.lock.acquire(
            f"event:{event_id}", owner=host.passes.owner(), ttl=host.options.lease_seconds
        )

    async def _deliver_event(
        self, event: Event, subscriptions: Sequence[EventSubscription] | None = None
    ) -> float | None:
        """Deliver ``event`` (holding its lease) to every open matching subscription (those
        given, when the caller has just read them)."""
        host = self.host
        if event.is_processed:
            return None
        if event.name == TERMINATE_CHILD_EVENT and not await host._terminate_child(event):
            return BUSY_RETRY
        if subscriptions is None:
            subscriptions = await host.persistence.get_subscriptions(
                event.name, event.key, event.time
            )
        seen: set[str] = set()
        while True:
            busy = deferred = False
            for subscription in subscriptions:
                seen.add(subscription.id)
                delivered = await self._deliver(subscription, event)
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
                await host.persistence.mark_event_processed(event.id)
            # A subscription opened meanwhile had the event marked unprocessed and queued
            # again (requeue_for), maybe before the mark above overwrote that: look again
            # now the mark is stored. One opened after this look is requeued after it.
            subscriptions = [
                s
                for s in await host.persistence.get_subscriptions(event.name, event.key, event.time)
                if s.id not in seen
            ]
            if not subscriptions:
                return None
            await host.persistence.mark_event_unprocessed(event.id)

    async def _deliver(self, subscription: EventSubscription, event: Event) -> bool | None:
        """True: done with this subscription; None: deferred until this host's pass over the
        workflow ends; False: another worker holds the workflow, try again later."""
        host = self.host
        handle = host.passes.running.get(subscription.workflow_id)
        if handle is not None:

            async def again() -> None:
                await host.queue.enqueue(QueueName.EVENT, event.id)

            handle.after.append(again)
            return None
        lease = await host.lock.acquire(
            subscription.workflow_id, owner=host.passes.owner(), ttl=host.options.lease_seconds
        )
        if lease is None:
            return False
        handed = resume = False
        try:
            try:
                instance = await host._load(subscription.workflow_id)
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
            event = await self._earliest_for(subscription, event)
            pointer.event_published = True
            pointer.event_data = event.data
            pointer.extensions["event_id"] = event.id
            pointer.extensions.pop(SUBSCRIPTION_ID, None)
            resume = instance.status == WorkflowStatus.RUNNABLE
            if resume:
                instance.next_execution = utcnow()
            # The subscription is closed by the same write (stored again, terminated).
            closed = attrs.evolve(subscription, terminated=True)
            carried = Carried([closed], [pointer.id]) if resume else None
            if carried is not None and host.passes.hand_over(instance, lease, carried):
                # The resumed pass takes the lease and stores the delivery with its first
                # write (one write less before the step after the wait runs). The event may
                # be marked processed only once that write is done.
                handed = True
                if not await carried.stored.wait():
                    return False  # the pass failed before storing it: deliver it again
            else:
                await host._store(
                    instance,
                    subscriptions=[closed],
                    changed_pointers=[pointer.id],
                    fence=lease.token,
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
                await host.passes._release(lease)
                if resume:
                    await host._enqueue_workflow(subscription.workflow_id)

    async def _earliest_for(self, subscription: EventSubscription, event: Event) -> Event:
        """The event ``subscription`` gets: the earliest stored one it matches (effective
        time, then publish order), which need not be ``event``. Stored events reach the
        queue in no particular order (a new subscription re-queues every match at once),
        so whichever of them is processed first hands over the earliest."""
        persistence = self.host.persistence
        matching = await persistence.get_events(
            subscription.event_name, subscription.event_key, subscription.subscribe_as_of
        )
        if not matching or matching[0] == event.id:
            return event
        try:
            return await persistence.get_event(matching[0])
        except EventNotFoundError:  # purged meanwhile
            return event

    async def _close(self, subscription_id: str) -> None:
        with contextlib.suppress(SubscriptionNotFoundError):
            await self.host.persistence.terminate_subscription(subscription_id)
