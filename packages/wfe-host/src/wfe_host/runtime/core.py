"""The runtime core of a host (package-internal): what every service of the runtime shares.

:class:`HostCore` owns the providers, the registered definitions and steps, the options and
the clock, the waiter table, the due-time table and, while the host runs, its task group; it
does the small things every service needs (load and store an instance, queue work, publish a
lifecycle event). The services (:mod:`~wfe_host.runtime.passes`,
:mod:`~wfe_host.runtime.events`, :mod:`~wfe_host.runtime.control`,
:mod:`~wfe_host.runtime.scheduler`, ...) are given the core and the other services they
need; none sees the :class:`~wfe_host.WorkflowClient` or :class:`~wfe_host.WorkflowHost`
built on them. Not a public API: it changes with the runtime.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from wfe_core.errors import SubscriptionNotFoundError, WfeError
from wfe_core.memory import InstanceSnapshot
from wfe_core.models import Event, WorkflowStatus
from wfe_core.primitives import CHILD_FINISHED_EVENT
from wfe_core.providers import QueueName
from wfe_host.runtime.data import restore
from wfe_host.runtime.definitions import DefinitionRegistry
from wfe_host.runtime.policy import HostPolicy
from wfe_host.runtime.scheduler import DueTimers
from wfe_host.runtime.waiting import Waiters, waiters_for

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from datetime import datetime

    from anyio.abc import TaskGroup

    from wfe_core import StepBody, StepMiddleware, WorkflowMiddleware
    from wfe_core.clock import Clock
    from wfe_core.models import (
        EventSubscription,
        ExecutionError,
        LifecycleEvent,
        StepDefinition,
        TraceContext,
        WorkflowInstance,
    )
    from wfe_core.providers import (
        Lease,
        LifecyclePublisher,
        LivePart,
        LockProvider,
        PersistenceProvider,
        PointerWrite,
        QueueProvider,
        SearchIndex,
    )
    from wfe_host.options import HostOptions
    from wfe_host.telemetry import Telemetry

logger = logging.getLogger("wfe_host")

#: The policy of a host not opened yet: nothing is shared (nothing reads it before then).
NOT_OPEN = HostPolicy(shared_store=False, distributed_lifecycle=False)


class HostCore:
    """The state and the shared operations of one host's runtime."""

    def __init__(
        self,
        *,
        persistence: PersistenceProvider,
        lock: LockProvider,
        queue: QueueProvider,
        search_index: SearchIndex | None,
        lifecycle: LifecyclePublisher,
        options: HostOptions,
        worker_id: str,
        clock: Clock,
    ) -> None:
        self.persistence = persistence
        self.lock = lock
        self.queue = queue
        self.search_index = search_index
        self.lifecycle = lifecycle
        self.options = options
        self.worker_id = worker_id
        #: Where the runtime reads the time.
        self.clock = clock
        #: The registered workflow definitions.
        self.definitions = DefinitionRegistry()
        self.step_factories: dict[type, Callable[[], StepBody]] = {}
        #: Bodies standing in for the steps of a name (tests), by step display name.
        self.step_substitutes: dict[str, Callable[[], StepBody]] = {}
        self.step_middleware: list[StepMiddleware] = []
        self.workflow_middleware: list[WorkflowMiddleware] = []
        #: The OpenTelemetry instruments (``None``: telemetry off, or the API not installed).
        self.telemetry: Telemetry | None = None
        #: The due times this host stored, and the scheduler's wake-up.
        self.timers = DueTimers()
        #: The waiters of ``wait_for_workflow`` (shared by the hosts of this process that
        #: share an in-process lifecycle publisher; chosen by :meth:`open`).
        self.waiters = Waiters()
        #: The task group the host's background tasks run in, while it runs.
        self.task_group: TaskGroup | None = None
        #: Whether the host runs workers (passes, deliveries) in ``task_group``.
        self.runs_workers = False
        #: What the host does differently depending on its providers' capabilities, derived
        #: by :meth:`open` (read on hot paths, so a plain attribute).
        self.policy = NOT_OPEN

    # -- lifetime ----------------------------------------------------------------------------
    def providers(self) -> list[Any]:
        """The providers to open and close, each once (one object may serve several concerns:
        a database as persistence, lock and queue)."""
        providers: list[Any] = [self.persistence, self.lock, self.queue, self.lifecycle]
        if self.search_index is not None:
            providers.append(self.search_index)
        unique: list[Any] = []
        for provider in providers:
            if not any(provider is seen for seen in unique):
                unique.append(provider)
        return unique

    def open(self) -> HostPolicy:
        """Called once the providers are open: derive the policy from their capabilities and
        choose the waiter table."""
        policy = HostPolicy.of(self.persistence, self.lock, self.lifecycle)
        self.policy = policy
        self.waiters = waiters_for(self.lifecycle, distributed=policy.distributed_lifecycle)
        return policy

    def worker_group(self) -> TaskGroup | None:
        """The task group to run work in the background in, ``None`` when the host runs no
        workers (then work goes through the queues, for any worker)."""
        return self.task_group if self.runs_workers else None

    def stop(self) -> None:
        """Cancel the background tasks (the host is stopping)."""
        task_group, self.task_group = self.task_group, None
        self.runs_workers = False
        if task_group is not None:
            task_group.cancel_scope.cancel()

    def trace_context(self) -> TraceContext | None:
        """The current trace context, to store with an event published now (``None``
        without telemetry, or with no span current)."""
        telemetry = self.telemetry
        return None if telemetry is None else telemetry.current_context()

    # -- instances ---------------------------------------------------------------------------
    async def load(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance, its data restored to the definition's data type."""
        return self.restore(await self.persistence.get_workflow(workflow_id))

    async def load_live(self, workflow_id: str) -> LivePart:
        """What a pass reads of the stored instance (its live part: see
        ``PersistenceProvider.get_live_part``), its data restored."""
        live = await self.persistence.get_live_part(workflow_id)
        self.restore(live.instance)
        return live

    def restore(self, instance: WorkflowInstance) -> WorkflowInstance:
        """``instance`` with its data restored to its definition's data type (in place)."""
        definition = self.definitions.find(instance.definition_id, instance.version)
        instance.data = restore(instance.data, definition)
        return instance

    def create_body(self, step: StepDefinition) -> StepBody:
        """A new body for one run of ``step``: its substitute's when one stands in for its
        name, else from its registered factory if it has one."""
        if self.step_substitutes:
            substitute = self.step_substitutes.get(step.display_name)
            if substitute is not None:
                return substitute()
        factory = self.step_factories.get(step.body) if isinstance(step.body, type) else None
        if factory is not None:
            return factory()
        return step.create_body()

    async def store(
        self,
        instance: WorkflowInstance,
        *,
        subscriptions: Sequence[EventSubscription] = (),
        errors: Sequence[ExecutionError] = (),
        closed_subscriptions: Sequence[str] = (),
        events: Sequence[Event] = (),
        changed_pointers: Collection[str] | None = None,
        fence: int | None = None,
        release: Lease | None = None,
        pointer_write: PointerWrite | None = None,
    ) -> None:
        """Persist ``instance`` (revision-checked, and fenced by ``fence``, the token of the
        lease the write is made under) with ``events`` in the same write (an outbox:
        notifications that must not be lost), and do what follows from it. ``release``:
        the lease to give back in the same write (``policy.leased_writes`` only).
        ``pointer_write``: the instance is a live part (see ``LivePart``)."""
        # Each only when given: a store written before leased writes or live parts (or a
        # wrapper of one) takes no such argument, and never gets one.
        extra: dict[str, Any] = {}
        if release is not None:
            extra["release"] = release
        if pointer_write is not None:
            extra["pointer_write"] = pointer_write
        await self.persistence.persist_workflow(
            instance,
            subscriptions=subscriptions,
            errors=errors,
            events=events,
            changed_pointers=changed_pointers,
            fence=fence,
            **extra,
        )
        for event in events:
            await self.enqueue_event(event.id)
        for subscription_id in closed_subscriptions:
            with contextlib.suppress(SubscriptionNotFoundError):
                await self.persistence.terminate_subscription(subscription_id)
        for subscription in subscriptions:
            if not subscription.terminated:
                await self.requeue_events_for(subscription)
        await self.enqueue_index(instance.id)
        due = instance.next_execution
        if (
            due is not None
            and instance.status == WorkflowStatus.RUNNABLE
            and due > self.clock.now()
        ):
            self.timers.note(instance.id, due)
        elif due is None or instance.status.is_finished:
            self.timers.forget(instance.id)

    async def finished_events(
        self, instance: WorkflowInstance, errors: Sequence[ExecutionError] = ()
    ) -> list[Event]:
        """The events the write that finishes ``instance`` must store with it: the
        child-finished notification of its parent, if it has one. ``errors`` are those stored
        by that same write."""
        if instance.parent_workflow_id is None:
            return []
        error = errors[-1].message if errors else None
        if error is None and instance.status != WorkflowStatus.COMPLETE:
            # The parent's step reports the child's last error, maybe stored by an earlier
            # write (a failure after compensation, a terminate after retries).
            stored = await self.persistence.get_errors(instance.id)
            error = stored[-1].message if stored else None
        data = {"status": str(instance.status), "error": error}
        return [
            Event(
                name=CHILD_FINISHED_EVENT,
                key=instance.id,
                data=data,
                time=self.clock.now(),
                trace_context=self.trace_context(),
            )
        ]

    async def on_finished(self, instance: WorkflowInstance) -> None:
        """After ``instance`` was stored finished (a parent was told in that same write):
        wake waiters and run the workflow middleware."""
        if self.waiters.waited_for(instance.id):
            stored: InstanceSnapshot | None = None
            if self.policy.shared_store:
                # What was just stored, so the waiters need not read it back from a database
                # (an in-process store reads faster than this copy is made): a snapshot as
                # its JSON text would read back, each waiter getting a copy of its own.
                with contextlib.suppress(TypeError, ValueError):  # not JSON: they read it
                    stored = InstanceSnapshot(instance)
            self.waiters.finished(instance.id, stored)
        for middleware in self.workflow_middleware:
            try:
                await middleware.after_workflow(instance)
            except Exception:
                logger.exception(
                    "workflow middleware failed after the workflow",
                    extra={"workflow_id": instance.id},
                )

    # -- notifications and queues ------------------------------------------------------------
    async def publish_lifecycle(self, event: LifecycleEvent) -> None:
        """Publish ``event``, best effort by contract: a broken publisher must not stop
        workflows."""
        try:
            await self.lifecycle.publish(event)
        except Exception:
            logger.exception("publishing a lifecycle event failed")

    async def enqueue_workflow(self, workflow_id: str) -> None:
        """Queue ``workflow_id`` for a pass, by any worker."""
        await self.queue.enqueue(QueueName.WORKFLOW, workflow_id)

    async def enqueue_index(self, workflow_id: str) -> None:
        """Queue ``workflow_id`` for the search index, when there is one."""
        if self.search_index is not None:
            await self.queue.enqueue(QueueName.INDEX, workflow_id)

    async def enqueue_event(self, event_id: str) -> None:
        """Queue a stored event for delivery; should that fail, the recovery sweep queues it
        later (failing here would only abandon a write that already succeeded)."""
        try:
            await self.queue.enqueue(QueueName.EVENT, event_id)
        except Exception:
            logger.exception("could not queue event %s; it will be recovered", event_id)

    async def requeue_events_for(self, subscription: EventSubscription) -> None:
        """Queue again the stored event a new subscription should get (the earliest it
        matches), so an event published before the subscription existed is not lost. The
        write that stored the subscription marked it unprocessed (the persistence contract),
        so should this process die before queueing it, the recovery sweep does; a delivery
        finds the subscriptions that already got one closed, so none gets it twice. Only
        that one: the later events of the key are not this subscription's, and queueing a
        reused key's whole history made every new wait slower than the last."""
        matching = await self.persistence.get_events(
            subscription.event_name, subscription.event_key, subscription.subscribe_as_of
        )
        if matching:
            await self.queue.enqueue(QueueName.EVENT, matching[0])

    async def recover_events(self, as_of: datetime | None = None) -> None:
        """Queue the stored events not processed yet whose time is at or before ``as_of``
        (default now): events left undelivered by an earlier run, another stopped host, or a
        write whose queueing never happened (the process died right after it). Run at
        start-up and, on a durable store, by the scheduler's recovery wake-up."""
        try:
            event_ids = await self.persistence.get_runnable_events(as_of or self.clock.now())
            for event_id in event_ids:
                await self.queue.enqueue(QueueName.EVENT, event_id)
        except Exception:
            logger.exception("could not queue undelivered events")
            return
        if event_ids:
            logger.info("queued %d undelivered event(s)", len(event_ids))

    async def index(self, workflow_id: str) -> float | None:
        """Queue handler of ``QueueName.INDEX``: index (or unindex) ``workflow_id``."""
        assert self.search_index is not None
        try:
            instance = await self.persistence.get_workflow(workflow_id)
        except WfeError:
            await self.search_index.remove_workflow(workflow_id)
            return None
        await self.search_index.index_workflow(instance)
        return None
