"""The :class:`WorkflowHost`: runs workflows on a set of providers."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import weakref
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio

from wfe_core.errors import (
    InvalidInputError,
    LifecycleGapError,
    SubscriptionNotFoundError,
    WfeError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from wfe_core.models import (
    Event,
    LifecycleEvent,
    LifecycleEventType,
    Page,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.primitives import CHILD_FINISHED_EVENT
from wfe_core.providers import QueueName, capabilities
from wfe_core.serialization import from_primitive, to_primitive
from wfe_core.spi import utcnow
from wfe_host import telemetry
from wfe_host.options import HostOptions
from wfe_host.runtime import control, queries
from wfe_host.runtime.consumer import consume
from wfe_host.runtime.data import initial_data, restore
from wfe_host.runtime.definitions import DefinitionRegistry
from wfe_host.runtime.events import EventDelivery
from wfe_host.runtime.passes import Outcome, PassRunner
from wfe_host.runtime.scheduler import Scheduler

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Callable,
        Collection,
        Iterable,
        Mapping,
        Sequence,
    )
    from types import TracebackType

    from anyio.abc import TaskGroup, TaskStatus

    from wfe_core import StepBody, StepMiddleware, WorkflowMiddleware
    from wfe_core.models import (
        EventSubscription,
        ExecutionError,
        ExecutionPointer,
        StepDefinition,
        WorkflowDefinition,
    )
    from wfe_core.providers import (
        LifecyclePublisher,
        LockProvider,
        PersistenceProvider,
        QueueProvider,
        SearchIndex,
    )
    from wfe_host.registry import PluginRegistry

logger = logging.getLogger("wfe_host")

_FINISHED_EVENTS = frozenset(
    {
        LifecycleEventType.WORKFLOW_COMPLETED,
        LifecycleEventType.WORKFLOW_FAILED,
        LifecycleEventType.WORKFLOW_TERMINATED,
    }
)
#: Concurrent deliveries of events by one host.
_EVENT_CONCURRENCY = 8
#: Concurrent search-index updates by one host.
_INDEX_CONCURRENCY = 4
#: Pause before a host's finish watcher subscribes again after its subscription failed.
_WATCH_RETRY = 1.0
#: Seconds between a waiter's reads of its workflow on a store other processes share.
_RECHECK = 1.0


class _Waiter:
    """One ``wait_for_workflow`` call: woken when its workflow finishes."""

    __slots__ = ("event", "stored")

    def __init__(self) -> None:
        self.event = anyio.Event()
        #: The finished instance as stored (JSON text), when the host of this process that
        #: finished it woke the waiter: it need not read it back.
        self.stored: str | None = None

    def wake(self, stored: str | None = None) -> None:
        self.stored = stored
        self.event.set()


#: Waiters of ``wait_for_workflow`` by workflow id: what to wake when it finishes.
_Waiters = dict[str, set[_Waiter]]
#: The waiter table of the hosts sharing an in-process lifecycle publisher (see _waiter_table).
_LOCAL_WAITERS: weakref.WeakKeyDictionary[Any, _Waiters] = weakref.WeakKeyDictionary()


def _waiter_table(lifecycle: LifecyclePublisher) -> _Waiters:
    """The waiter table of a host using ``lifecycle``.

    Hosts of this process that share a publisher without the ``distributed`` capability share
    one table: the host that finishes a workflow wakes every waiter of all of them directly, so
    none needs to watch the lifecycle stream. A distributed publisher also carries other
    processes' events: such a host has a table of its own and one watcher (``_watch_finished``).
    """
    if capabilities.DISTRIBUTED in type(lifecycle).capabilities:
        return {}
    try:
        return _LOCAL_WAITERS.setdefault(lifecycle, {})
    except TypeError:  # not hashable or not weakly referenceable: on its own, then
        return {}


class WorkflowHost:
    """Runs workflows: ``async with WorkflowHost(...) as host: ...``.

    Providers left as ``None`` are the in-memory ones (search stays off: listing and
    :meth:`search` then go through persistence). Entering the host opens the providers and,
    unless ``options.run_workers`` is false, starts the background consumers (workflow passes,
    event delivery, search indexing, the due-time scheduler); leaving stops them and closes
    the providers.
    """

    def __init__(
        self,
        persistence: PersistenceProvider | None = None,
        lock: LockProvider | None = None,
        queue: QueueProvider | None = None,
        search: SearchIndex | None = None,
        lifecycle: LifecyclePublisher | None = None,
        options: HostOptions | None = None,
        registry: PluginRegistry | None = None,
        *,
        step_middleware: Iterable[StepMiddleware] = (),
        workflow_middleware: Iterable[WorkflowMiddleware] = (),
    ) -> None:
        from wfe_core.memory import MemoryLifecycle, MemoryLock, MemoryPersistence, MemoryQueue

        self.persistence: PersistenceProvider = persistence or MemoryPersistence()
        self.lock: LockProvider = lock or MemoryLock()
        self.queue: QueueProvider = queue or MemoryQueue()
        self.search_index: SearchIndex | None = search
        self.lifecycle: LifecyclePublisher = lifecycle or MemoryLifecycle()
        self.options = options or HostOptions()
        self.registry = registry
        self.worker_id = self.options.worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{new_id()[:6]}"
        )
        #: The registered workflow definitions.
        self.definitions = DefinitionRegistry()
        self.step_middleware: list[StepMiddleware] = list(step_middleware)
        self.workflow_middleware: list[WorkflowMiddleware] = list(workflow_middleware)
        if self.options.telemetry and telemetry.available():
            instruments = telemetry.Telemetry()
            self.step_middleware.insert(0, instruments)  # outermost: it times the others too
            self.workflow_middleware.insert(0, instruments)
        self.step_factories: dict[type, Callable[[], StepBody]] = {}
        self.passes = PassRunner(self)
        self.events = EventDelivery(self)
        self.scheduler = Scheduler(self)
        self._waiters: _Waiters = _waiter_table(self.lifecycle)
        #: Whether the finish watcher is subscribed to a distributed lifecycle publisher.
        self._watching = False
        self._stack: contextlib.AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        #: Events this host is delivering itself, right after storing them (publish_event).
        self._local_deliveries = 0

    @classmethod
    def from_settings(
        cls,
        source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> WorkflowHost:
        """A host with providers resolved by name from settings (a mapping, a ``wfe.toml``
        path, or ``None`` for environment and defaults) through the installed plugins."""
        from wfe_host.bootstrap import resolve

        settings = resolve(source, **overrides)
        return cls(
            persistence=settings.persistence,
            lock=settings.lock,
            queue=settings.queue,
            search=settings.search,
            lifecycle=settings.lifecycle,
            options=settings.options,
            registry=settings.registry,
        )

    # -- lifetime ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise WfeError("this WorkflowHost is already running")
        stack = contextlib.AsyncExitStack()
        try:
            for provider in self._providers():
                await stack.enter_async_context(provider)
            watch = capabilities.DISTRIBUTED in type(self.lifecycle).capabilities
            if self.options.run_workers or watch:
                self._task_group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(self._stop_workers)
                if watch:
                    # Also without workers: a client host waits for other hosts' workflows.
                    await self._task_group.start(self._watch_finished)
                if self.options.run_workers:
                    self._start_workers(self._task_group)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def _providers(self) -> list[Any]:
        providers: list[Any] = [self.persistence, self.lock, self.queue, self.lifecycle]
        if self.search_index is not None:
            providers.append(self.search_index)
        # One object may serve several concerns (a database as persistence, lock and queue).
        unique: list[Any] = []
        for provider in providers:
            if not any(provider is seen for seen in unique):
                unique.append(provider)
        return unique

    def _start_workers(self, tg: TaskGroup) -> None:
        self.passes.open()
        visibility = max(self.options.lease_seconds * 10, 300.0)
        tg.start_soon(
            lambda: consume(
                self.queue,
                QueueName.WORKFLOW,
                self.passes.process,
                slots=self.passes.slots,
                visibility_timeout=visibility,
            )
        )
        tg.start_soon(
            lambda: consume(
                self.queue,
                QueueName.EVENT,
                self.events.process,
                slots=anyio.Semaphore(_EVENT_CONCURRENCY),
                visibility_timeout=visibility,
            )
        )
        if self.search_index is not None:
            tg.start_soon(
                lambda: consume(
                    self.queue,
                    QueueName.INDEX,
                    self._index,
                    slots=anyio.Semaphore(_INDEX_CONCURRENCY),
                    visibility_timeout=visibility,
                )
            )
        tg.start_soon(self.passes.renew_leases)
        tg.start_soon(self.scheduler.run)
        tg.start_soon(self._recover_events)

    def _stop_workers(self) -> None:
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()
            self._task_group = None

    async def _recover_events(self, as_of: datetime | None = None) -> None:
        """Queue the stored events not processed yet whose time is at or before ``as_of``
        (default now): events left undelivered by an earlier run, another stopped host, or a
        write whose queueing never happened (the process died right after it). Run at
        start-up and, on a durable store, by the scheduler's recovery wake-up."""
        try:
            event_ids = await self.persistence.get_runnable_events(as_of or utcnow())
            for event_id in event_ids:
                await self.queue.enqueue(QueueName.EVENT, event_id)
        except Exception:
            logger.exception("could not queue undelivered events")
            return
        if event_ids:
            logger.info("queued %d undelivered event(s)", len(event_ids))

    # -- definitions and steps ---------------------------------------------------------------
    def register(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        """Make ``definition`` runnable on this host (same id and version: replaced)."""
        self.definitions.add(definition)
        return definition

    def register_step(
        self, step_type: type[StepBody], factory: Callable[[], StepBody] | None = None
    ) -> None:
        """Build bodies of ``step_type`` with ``factory`` (dependency injection), wherever a
        definition names the class."""
        self.step_factories[step_type] = factory or step_type

    def load_definitions(
        self, path: str | os.PathLike[str], config: Mapping[str, str] | None = None
    ) -> list[WorkflowDefinition]:
        """Load and register every definition in ``path`` through the definition format the
        plugins register for its suffix (``.yaml`` with wfe-yaml installed)."""
        registry = self.registry
        if registry is None:
            from wfe_host.registry import default_registry

            registry = default_registry()
        file = Path(path)
        # The registry wraps the plugin's DefinitionFormatSpec with where it came from.
        spec = registry.definition_format_for(file).spec
        definitions = list(spec.load(file, config))
        for definition in definitions:
            self.register(definition)
        return definitions

    def add_step_middleware(self, middleware: StepMiddleware) -> None:
        """Wrap every step run from now on in ``middleware`` (outermost last added)."""
        self.step_middleware.append(middleware)

    def add_workflow_middleware(self, middleware: WorkflowMiddleware) -> None:
        """Call ``middleware`` before and after every workflow from now on."""
        self.workflow_middleware.append(middleware)

    def _create_body(self, step: StepDefinition) -> StepBody:
        factory = self.step_factories.get(step.body) if isinstance(step.body, type) else None
        if factory is not None:
            return factory()
        return step.create_body()

    # -- starting and reading workflows ------------------------------------------------------
    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        version: int | None = None,
        reference: str | None = None,
        *,
        parent_workflow_id: str | None = None,
        parent_pointer_id: str | None = None,
        workflow_id: str | None = None,
    ) -> str:
        """Start a workflow of ``definition_id`` (latest version unless ``version``) with
        ``data`` (the definition's data type, or a mapping structured into it); returns its id.

        Raises :class:`~wfe_core.errors.InvalidInputError`, storing nothing, when the data does
        not fit the definition's declared inputs."""
        definition = self.definitions.get(definition_id, version)
        data = initial_data(data, definition)
        if definition.prepare_input is not None:
            data = definition.prepare_input(data)
        instance = WorkflowInstance(
            definition_id=definition.id,
            version=definition.version,
            id=workflow_id or new_id(),
            data=data,
            reference=reference,
            description=definition.description,
            parent_workflow_id=parent_workflow_id,
            parent_pointer_id=parent_pointer_id,
            next_execution=utcnow(),
        )
        for middleware in self.workflow_middleware:
            await middleware.before_workflow(instance)
        try:
            await self.persistence.create_workflow(instance)
        except (TypeError, ValueError) as exc:
            # A value the definition's data type does not declare (a dict's values, an
            # ``Any`` field) that the store cannot encode: nothing was stored.
            raise InvalidInputError(
                definition.id, [f"the workflow data cannot be stored: {exc}"]
            ) from exc
        logger.info(
            "started workflow %s v%s",
            definition.id,
            definition.version,
            extra={"workflow_id": instance.id, "definition_id": definition.id},
        )
        if self.lifecycle.has_subscribers:
            await self._publish_lifecycle(
                control.lifecycle_event(instance, LifecycleEventType.WORKFLOW_STARTED)
            )
        if not self.passes.start(instance):
            await self._enqueue_workflow(instance.id)
        await self._enqueue_index(instance.id)
        return instance.id

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance with its data restored to the definition's data type."""
        return await self._load(workflow_id)

    async def get_workflow_pointers(
        self, workflow_id: str, *, skip: int = 0, take: int = 100
    ) -> Page[ExecutionPointer]:
        """A page of the workflow's execution pointers, in the order they were created:
        ``take`` of them from position ``skip`` on, with ``total``, how many it has. For
        showing a long history without reading it whole (:meth:`get_workflow` returns every
        pointer); ``WorkflowNotFoundError`` for an unknown id."""
        return await self.persistence.get_pointers(workflow_id, skip=skip, take=take)

    async def list_workflows(
        self,
        status: WorkflowStatus | str | None = None,
        definition_id: str | None = None,
        skip: int = 0,
        take: int = 100,
        *,
        reference: str | None = None,
    ) -> Page[WorkflowInstance]:
        """Instances matching every given filter, newest first."""
        page = await self.persistence.list_workflows(
            status=None if status is None else WorkflowStatus(status),
            definition_id=definition_id,
            reference=reference,
            skip=skip,
            take=take,
        )
        return Page([self._restore(i) for i in page.items], page.total, page.skip, page.take)

    async def search(
        self,
        text: str | None = None,
        *,
        filters: Mapping[str, Any] | None = None,
        skip: int = 0,
        take: int = 20,
    ) -> Page[WorkflowInstance]:
        """Find instances by text and filters: through the search provider when there is one,
        else by scanning persistence (fine for small stores)."""
        if self.search_index is not None:
            page = await self.search_index.search(text, filters=filters, skip=skip, take=take)
            return Page([self._restore(i) for i in page.items], page.total, page.skip, page.take)
        matches = [
            i async for i in queries.scan(self, filters or {}) if queries.matches_text(i, text)
        ]
        return Page(matches[skip : skip + take], len(matches), skip, take)

    async def wait_for_workflow(
        self,
        workflow_id: str,
        timeout: float | None = None,
    ) -> WorkflowInstance:
        """Wait until the workflow is complete, failed or terminated and return it.

        Woken by this host (or one of this process sharing its lifecycle publisher) finishing
        it, or by the host's watcher of a distributed lifecycle publisher. On a store shared
        with other processes without such a publisher, it also reads the workflow again every
        second (not while this host is running it), in case another process finishes it. Raises
        :class:`~wfe_core.errors.WorkflowTimeoutError` after ``timeout`` seconds.
        """
        waiters = self._waiters.setdefault(workflow_id, set())
        # Registered before the first read: a finish after that read wakes it.
        waiter = _Waiter()
        waiters.add(waiter)
        try:
            with anyio.fail_after(timeout):
                while True:
                    # While a pass of this host runs it, that pass wakes the waiter when it
                    # stores the finished instance or ends (see _pass_ended): no read needed.
                    if waiter.event.is_set() or workflow_id not in self.passes.running:
                        if waiter.event.is_set():
                            waiters.discard(waiter)
                            waiter = _Waiter()
                            waiters.add(waiter)
                        instance = await self._load(workflow_id)
                        if instance.status.is_finished:
                            return instance
                    while True:
                        with anyio.move_on_after(self._recheck_after()):
                            await waiter.event.wait()
                        # A pass of this host wakes the waiters when it finishes the workflow.
                        if waiter.event.is_set() or workflow_id not in self.passes.running:
                            break
                    if waiter.stored is not None:
                        return self._restore(
                            from_primitive(json.loads(waiter.stored), WorkflowInstance)
                        )
        except TimeoutError:
            raise WorkflowTimeoutError(
                f"workflow {workflow_id} did not finish within {timeout} s"
            ) from None
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(workflow_id) is waiters:
                del self._waiters[workflow_id]
        raise AssertionError("unreachable")  # pragma: no cover

    def _recheck_after(self) -> float:
        """How long a waiter trusts notifications alone: for ever, unless the store is shared
        with other processes (durable) while lifecycle events stay in this one; then another
        process may finish the workflow without telling us, so look again now and then."""
        shared_store = capabilities.DURABLE in type(self.persistence).capabilities
        return _RECHECK if shared_store and not self._watching else math.inf

    async def _watch_finished(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Wake the waiters of workflows that other hosts finish, from a distributed lifecycle
        publisher's events: one subscription per host, however many wait. While it is not
        subscribed (its subscription failed), waiters on a durable store read again now and
        then instead."""
        started = False
        while True:
            subscription = self.lifecycle.subscribe()
            try:
                # A network subscription is active only once its server confirmed it; until
                # then waiters keep reading persistence now and then.
                active = getattr(subscription, "wait_active", None)
                if active is not None:
                    await active()
                self._watching = True
                if started:
                    # Subscribed again after a failure: what finished meanwhile was announced
                    # to nobody, so the waiters read persistence once more.
                    self._wake_all_waiters()
                else:
                    task_status.started()
                    started = True
                async for event in subscription:
                    if event.type in _FINISHED_EVENTS:
                        for waiter in self._waiters.get(event.workflow_id, ()):
                            waiter.wake()
                return  # the publisher closed: the host is stopping
            except LifecycleGapError as exc:
                # Events were lost (a reconnect): the waiters, woken below, read persistence.
                logger.warning("lifecycle events may be lost (%s); subscribing again", exc)
            except Exception:
                logger.exception("watching lifecycle events failed; subscribing again")
            finally:
                self._watching = False
                closer = getattr(subscription, "aclose", None)
                if closer is not None:
                    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                        await closer()
            if not started:
                task_status.started()
                started = True
            # Waiters read again while it is down; wake them so they notice the change.
            self._wake_all_waiters()
            await anyio.sleep(_WATCH_RETRY)

    def _wake_all_waiters(self) -> None:
        for waiters in list(self._waiters.values()):
            for waiter in waiters:
                waiter.wake()

    def lifecycle_events(self) -> AsyncIterator[LifecycleEvent]:
        """Lifecycle events from now on (``async for event in host.lifecycle_events()``)."""
        return self.lifecycle.subscribe()

    # -- events ------------------------------------------------------------------------------
    async def publish_event(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
    ) -> str:
        """Store an event and queue it for delivery to the steps waiting for ``name``/``key``
        (also those that start waiting later, as of a date at or before ``effective_date``,
        default now). Returns the event id."""
        event = Event(name=name, key=str(key), data=data, time=effective_date or utcnow())
        tg = self._task_group
        if (
            tg is None
            or not self.options.run_workers
            or self._local_deliveries >= _EVENT_CONCURRENCY
        ):
            await self.persistence.create_event(event)
            await self.queue.enqueue(QueueName.EVENT, event.id)
            return event.id
        # Delivered by this host at once, skipping the queue's round trip (beyond a few at a
        # time, through the queue, whose consumers pace them). The delivery starts reading
        # while the event is being stored, and writes nothing before it is.
        stored = Outcome()
        self._local_deliveries += 1
        tg.start_soon(self._deliver_now, event, stored)
        try:
            await self.persistence.create_event(event)
        except BaseException:
            stored.set(ok=False)
            raise
        stored.set(ok=True)
        return event.id

    async def _deliver_now(self, event: Event, stored: Outcome) -> None:
        try:
            await self.events.deliver_now(event, stored)
        finally:
            self._local_deliveries -= 1

    # -- control -----------------------------------------------------------------------------
    async def suspend_workflow(self, workflow_id: str) -> bool:
        """Suspend a runnable workflow (running steps finish first). False when it was not
        runnable."""

        return bool(
            await self.passes.with_lease(
                workflow_id, lambda i, fence: control.suspend(self, i, fence=fence)
            )
        )

    async def resume_workflow(self, workflow_id: str) -> bool:
        """Resume a suspended workflow. False when it was not suspended."""

        resumed = bool(
            await self.passes.with_lease(
                workflow_id, lambda i, fence: control.resume(self, i, fence=fence)
            )
        )
        if resumed:
            await self._enqueue_workflow(workflow_id)
        return resumed

    async def terminate_workflow(self, workflow_id: str) -> bool:
        """Terminate a workflow that has not finished, cancelling its running steps, and its
        unfinished child workflows (recursively: parent close policy "terminate"). False when
        it had already finished.

        The children are terminated through events stored in the parent's terminating write,
        delivered here before returning; should this process die first, another host (or this
        one after a restart) delivers them.
        """
        terminated, child_events = await self.passes.with_lease(
            workflow_id,
            lambda i, fence: control.terminate(self, i, fence=fence),
            cancel_running=True,
        )
        # After the parent's lease is released: a child's termination takes the child's lease.
        for event_id in child_events:
            await self.events.process(event_id)
        return bool(terminated)

    async def purge(
        self,
        older_than: timedelta | datetime = timedelta(days=7),
        statuses: Iterable[WorkflowStatus | str] = ("complete", "terminated", "failed"),
    ) -> int:
        """Delete finished instances (in ``statuses``) that finished before ``older_than``
        ago (or before that datetime). Returns how many were deleted."""
        cutoff = utcnow() - older_than if isinstance(older_than, timedelta) else older_than
        wanted = [WorkflowStatus(s) for s in statuses]
        doomed: list[str] = []
        if self.search_index is not None:
            for status in wanted:
                doomed += [
                    i.id
                    async for i in queries.scan(self, {"status": status})
                    if i.complete_time is not None and i.complete_time < cutoff
                ]
        count = await self.persistence.purge_workflows(older_than=cutoff, statuses=wanted)
        if self.search_index is not None:
            for workflow_id in doomed:
                await self.search_index.remove_workflow(workflow_id)
        return count

    # -- internals used by the runtime modules -----------------------------------------------
    async def _load(self, workflow_id: str) -> WorkflowInstance:
        return self._restore(await self.persistence.get_workflow(workflow_id))

    def _restore(self, instance: WorkflowInstance) -> WorkflowInstance:
        definition = self.definitions.find(instance.definition_id, instance.version)
        instance.data = restore(instance.data, definition)
        return instance

    async def _store(
        self,
        instance: WorkflowInstance,
        *,
        subscriptions: Sequence[EventSubscription] = (),
        errors: Sequence[ExecutionError] = (),
        closed_subscriptions: Sequence[str] = (),
        events: Sequence[Event] = (),
        changed_pointers: Collection[str] | None = None,
        fence: int | None = None,
    ) -> None:
        """Persist ``instance`` (revision-checked, and fenced by ``fence``, the token of the
        lease the write is made under) with ``events`` in the same write (an outbox:
        notifications that must not be lost), and do what follows from it."""
        await self.persistence.persist_workflow(
            instance,
            subscriptions=subscriptions,
            errors=errors,
            events=events,
            changed_pointers=changed_pointers,
            fence=fence,
        )
        for event in events:
            await self._enqueue_stored_event(event.id)
        for subscription_id in closed_subscriptions:
            with contextlib.suppress(SubscriptionNotFoundError):
                await self.persistence.terminate_subscription(subscription_id)
        for subscription in subscriptions:
            if not subscription.terminated:
                await self.events.requeue_for(subscription)
        await self._enqueue_index(instance.id)
        due = instance.next_execution
        if due is not None and due > utcnow() and instance.status == WorkflowStatus.RUNNABLE:
            self.scheduler.note(instance.id, due)

    async def _enqueue_stored_event(self, event_id: str) -> None:
        try:
            await self.queue.enqueue(QueueName.EVENT, event_id)
        except Exception:
            # The event is stored unprocessed: the recovery sweep queues it later. Failing
            # here would only abandon a write that already succeeded.
            logger.exception("could not queue event %s; it will be recovered", event_id)

    async def _finished_events(
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
        return [Event(name=CHILD_FINISHED_EVENT, key=instance.id, data=data)]

    async def _terminate_child(self, event: Event) -> bool:
        """Deliver a :data:`TERMINATE_CHILD_EVENT`: terminate the child it names (and its own
        children) if its parent is the one the event names. False when the child stayed busy;
        try again later."""
        parent_id = event.data.get("parent_workflow_id") if isinstance(event.data, dict) else None
        try:
            child = await self.persistence.get_workflow(event.key)
        except WorkflowNotFoundError:
            return True
        if parent_id is None or child.parent_workflow_id != parent_id:
            logger.warning(
                "ignored a request to terminate workflow %s: its parent is %s, not %s",
                event.key,
                child.parent_workflow_id,
                parent_id,
            )
            return True
        if child.status.is_finished:
            return True
        try:
            await self.terminate_workflow(child.id)
        except WorkflowNotFoundError:
            return True
        except WfeError:
            logger.warning("could not terminate child workflow %s yet", child.id, exc_info=True)
            return False
        logger.info(
            "terminated child workflow %s of %s",
            child.id,
            parent_id,
            extra={"workflow_id": child.id},
        )
        return True

    async def _on_finished(self, instance: WorkflowInstance) -> None:
        """After ``instance`` was stored finished (a parent was told in that same write):
        wake waiters and run the workflow middleware."""
        waiters = self._waiters.get(instance.id)
        if waiters:
            stored: str | None = None
            if capabilities.DURABLE in type(self.persistence).capabilities:
                # What was just stored, so the waiters need not read it back from a database
                # (an in-process store reads faster than this copy is made).
                with contextlib.suppress(TypeError, ValueError):  # not JSON: they read it
                    stored = json.dumps(to_primitive(instance))
            for waiter in waiters:
                waiter.wake(stored)
        for middleware in self.workflow_middleware:
            try:
                await middleware.after_workflow(instance)
            except Exception:
                logger.exception(
                    "workflow middleware failed after the workflow",
                    extra={"workflow_id": instance.id},
                )

    def _pass_ended(self, workflow_id: str) -> None:
        """A pass of this host over ``workflow_id`` ended: its waiters that skipped reading
        it while it ran look again (unless the pass woke them when it finished it)."""
        for waiter in self._waiters.get(workflow_id, ()):
            if not waiter.event.is_set():
                waiter.wake()

    async def _publish_lifecycle(self, event: LifecycleEvent) -> None:
        try:
            await self.lifecycle.publish(event)
        except Exception:
            # Best effort by contract: a broken publisher must not stop workflows.
            logger.exception("publishing a lifecycle event failed")

    async def _enqueue_workflow(self, workflow_id: str) -> None:
        await self.queue.enqueue(QueueName.WORKFLOW, workflow_id)

    async def _enqueue_index(self, workflow_id: str) -> None:
        if self.search_index is not None:
            await self.queue.enqueue(QueueName.INDEX, workflow_id)

    async def _index(self, workflow_id: str) -> float | None:
        assert self.search_index is not None
        try:
            instance = await self.persistence.get_workflow(workflow_id)
        except WfeError:
            await self.search_index.remove_workflow(workflow_id)
            return None
        await self.search_index.index_workflow(instance)
        return None
