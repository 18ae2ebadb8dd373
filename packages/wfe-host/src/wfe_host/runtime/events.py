"""Delivering stored events to the subscriptions of waiting steps."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from wfe_core.engine.executor import SUBSCRIPTION_ID
from wfe_core.errors import (
    EventNotFoundError,
    SubscriptionNotFoundError,
    WorkflowNotFoundError,
)
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.models.instance import utcnow
from wfe_core.primitives import TERMINATE_CHILD_EVENT
from wfe_core.providers import QueueName

if TYPE_CHECKING:
    from wfe_core.models import Event, EventSubscription
    from wfe_host.host import WorkflowHost

logger = logging.getLogger("wfe_host.events")

#: Seconds before retrying an event whose workflow another worker is running.
BUSY_RETRY = 0.5


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
        """Deliver ``event_id`` to every open matching subscription."""
        host = self.host
        lease = await host.lock.acquire(
            f"event:{event_id}", owner=host.passes.owner(), ttl=host.options.lease_seconds
        )
        if lease is None:
            return BUSY_RETRY
        try:
            try:
                event = await host.persistence.get_event(event_id)
            except EventNotFoundError:
                return None
            if event.is_processed:
                return None
            if event.name == TERMINATE_CHILD_EVENT and not await host._terminate_child(event):
                return BUSY_RETRY
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
                await host.persistence.mark_event_processed(event_id)
                # A subscription opened meanwhile had the event marked unprocessed and queued
                # again (requeue_for), maybe before the mark above overwrote that: look again
                # now the mark is stored. One opened after this look is requeued after it.
                subscriptions = [
                    s
                    for s in await host.persistence.get_subscriptions(
                        event.name, event.key, event.time
                    )
                    if s.id not in seen
                ]
                if not subscriptions:
                    return None
                await host.persistence.mark_event_unprocessed(event_id)
        finally:
            await host.passes._release(lease)

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
        resume = False
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
            if waiting:
                pointer.event_published = True
                pointer.event_data = event.data
                pointer.extensions["event_id"] = event.id
                pointer.extensions.pop(SUBSCRIPTION_ID, None)
                if instance.status == WorkflowStatus.RUNNABLE:
                    instance.next_execution = utcnow()
                await host._store(instance)
                logger.info(
                    "event %s/%s delivered",
                    event.name,
                    event.key,
                    extra={"workflow_id": instance.id, "pointer_id": pointer.id},
                )
            await self._close(subscription.id)
            resume = waiting and instance.status == WorkflowStatus.RUNNABLE
            return True
        finally:
            await host.passes._release(lease)
            if resume:
                # Queued after the release: a pass dequeued while this delivery still held
                # the lease would find it busy and wait for its busy retry.
                await host._enqueue_workflow(subscription.workflow_id)

    async def _close(self, subscription_id: str) -> None:
        with contextlib.suppress(SubscriptionNotFoundError):
            await self.host.persistence.terminate_subscription(subscription_id)
