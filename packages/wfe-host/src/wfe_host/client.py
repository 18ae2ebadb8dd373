"""The :class:`WorkflowClient`: starts, reads and controls workflows, runs none itself."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio

from wfe_core.clock import SYSTEM_CLOCK
from wfe_core.errors import InvalidInputError, WfeError
from wfe_core.models import (
    Event,
    LifecycleEventType,
    Page,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.providers import LeaseRequest
from wfe_host import telemetry as otel
from wfe_host.options import HostOptions
from wfe_host.runtime import queries
from wfe_host.runtime.control import Control, lifecycle_event
from wfe_host.runtime.core import HostCore
from wfe_host.runtime.data import initial_data
from wfe_host.runtime.events import EventDelivery
from wfe_host.runtime.external import DEFAULT_ACTIVITY_LEASE, ExternalWork
from wfe_host.runtime.passes import PassRunner
from wfe_host.runtime.stuck import StuckWorkflow, find_stuck
from wfe_host.runtime.waiting import wait_until_finished, watch_finished

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Mapping
    from types import TracebackType

    from anyio.abc import TaskGroup

    from wfe_core import WorkflowMiddleware
    from wfe_core.clock import Clock
    from wfe_core.models import (
        ExecutionPointer,
        LifecycleEvent,
        OpenUserAction,
        PendingActivity,
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
    from wfe_host.runtime.definitions import DefinitionRegistry
    from wfe_host.telemetry import Telemetry

logger = logging.getLogger("wfe_host")


class WorkflowClient:
    """Starts, reads and controls workflows on a set of providers, and runs none of them:
    ``async with WorkflowClient(...) as client: ...``. The workers of a
    :class:`~wfe_host.WorkflowHost` on the same providers (``wfe worker``) run them.

    Providers left as ``None`` are the in-memory ones (search stays off: listing and
    :meth:`search` then go through persistence). Entering the client opens the providers;
    leaving closes them. Suspend, resume and terminate take the workflow's lease, as a
    worker's pass does, so they never interleave with one. Definitions are registered
    (:meth:`register`) so that workflow data is returned as the definition's data type, and
    :meth:`start_workflow` can check inputs.
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
        workflow_middleware: Iterable[WorkflowMiddleware] = (),
        clock: Clock = SYSTEM_CLOCK,
        telemetry: Telemetry | None = None,
    ) -> None:
        """``telemetry``: the OpenTelemetry instruments to record with (default: made on
        the global tracer and meter providers when ``opentelemetry-api`` is installed and
        ``options.telemetry`` is on; given, they are used whatever ``options.telemetry``
        says)."""
        from wfe_core.memory import MemoryLifecycle, MemoryLock, MemoryPersistence, MemoryQueue

        options = options or HostOptions()
        core = HostCore(
            persistence=persistence or MemoryPersistence(),
            # The in-memory lock and queue stamp their leases and messages with it too.
            lock=lock or MemoryLock(clock=clock),
            queue=queue or MemoryQueue(clock=clock),
            search_index=search,
            lifecycle=lifecycle or MemoryLifecycle(),
            options=options,
            worker_id=options.worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:6]}",
            clock=clock,
        )
        core.workflow_middleware.extend(workflow_middleware)
        if telemetry is None and options.telemetry and otel.available():
            telemetry = otel.Telemetry()
        if telemetry is not None:
            core.telemetry = telemetry
            core.step_middleware.insert(0, telemetry)  # outermost: it times the others too
            core.workflow_middleware.insert(0, telemetry)
        self._core = core
        self.registry = registry
        #: The runtime's services (for tools and tests; not a stable API).
        self.passes = PassRunner(core, self)
        self.events = EventDelivery(core, self.passes)
        self.control = Control(core, self.passes, self.events)
        self.external = ExternalWork(core, self.events)
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    def from_settings(
        cls,
        source: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> Self:
        """One on the providers resolved by name from settings (a mapping, a ``wfe.toml``
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

    # -- what it runs on ---------------------------------------------------------------------
    @property
    def persistence(self) -> PersistenceProvider:
        """The store of instances, events and subscriptions."""
        return self._core.persistence

    @property
    def lock(self) -> LockProvider:
        """The leases on instances."""
        return self._core.lock

    @property
    def queue(self) -> QueueProvider:
        """The queues of work for the workers."""
        return self._core.queue

    @property
    def search_index(self) -> SearchIndex | None:
        """The search index, ``None`` when search goes through persistence."""
        return self._core.search_index

    @property
    def lifecycle(self) -> LifecyclePublisher:
        """Where lifecycle events are published."""
        return self._core.lifecycle

    @property
    def options(self) -> HostOptions:
        """The host options (``[host]`` in settings)."""
        return self._core.options

    @property
    def worker_id(self) -> str:
        """The name of this process's leases in the lock provider, and in logs."""
        return self._core.worker_id

    @property
    def clock(self) -> Clock:
        """Where the runtime reads the time."""
        return self._core.clock

    @property
    def definitions(self) -> DefinitionRegistry:
        """The registered workflow definitions."""
        return self._core.definitions

    @property
    def workflow_middleware(self) -> list[WorkflowMiddleware]:
        """The workflow middleware, called before and after every workflow."""
        return self._core.workflow_middleware

    # -- lifetime ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise WfeError(f"this {type(self).__name__} is already running")
        core = self._core
        stack = contextlib.AsyncExitStack()
        try:
            for provider in core.providers():
                await stack.enter_async_context(provider)
            policy = core.open()
            if policy.distributed_lifecycle or self._runs_workers():
                core.task_group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(core.stop)
                if policy.distributed_lifecycle:
                    # Also without workers: a client waits for other hosts' workflows.
                    await core.task_group.start(watch_finished, core)
                if self._runs_workers():
                    self._start_workers(core.task_group)
                    # Runs before core.stop (an exit stack unwinds last in, first out): stop
                    # taking work and let the running steps finish, then cancel the rest.
                    stack.push_async_callback(self._stop_workers)
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

    def _runs_workers(self) -> bool:
        """Whether entering starts workers (a client runs none)."""
        return False

    def _start_workers(self, tg: TaskGroup) -> None:
        """Start the workers in ``tg`` (a client has none)."""

    async def _stop_workers(self) -> None:
        """Stop the workers gracefully, before they are cancelled (a client has none)."""

    # -- definitions -------------------------------------------------------------------------
    def register(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        """Make ``definition`` known here (same id and version: replaced)."""
        self._core.definitions.add(definition)
        return definition

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

    def add_workflow_middleware(self, middleware: WorkflowMiddleware) -> None:
        """Call ``middleware`` before and after every workflow from now on."""
        self._core.workflow_middleware.append(middleware)

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
        core = self._core
        definition = core.definitions.get(definition_id, version)
        data = initial_data(data, definition)
        if definition.prepare_input is not None:
            data = definition.prepare_input(data)
        now = core.clock.now()
        instance = WorkflowInstance(
            definition_id=definition.id,
            version=definition.version,
            id=workflow_id or new_id(),
            data=data,
            reference=reference,
            description=definition.description,
            parent_workflow_id=parent_workflow_id,
            parent_pointer_id=parent_pointer_id,
            next_execution=now,
            create_time=now,
        )
        for middleware in core.workflow_middleware:
            await middleware.before_workflow(instance)
        # A host with a slot free runs the first pass at once, and its first write creates
        # the instance (with the first step's start): one commit fewer per workflow.
        creation = self.passes.create(instance)
        if creation is not None:
            # Shielded: once the pass runs, the caller learns whether it stored the instance.
            with anyio.CancelScope(shield=True):
                created = await creation.stored.wait()
            if created:
                self._started(instance, definition)
                return instance.id
            if creation.stored.error is not None:
                raise self._create_error(creation.stored.error, definition)
            # Nothing stored (no lease, the host stopping): the usual way.
        # A first pass this host will run (once a slot frees) has its lease taken by the
        # write creating the instance, when the store keeps the lock's leases.
        passes = self.passes
        reserved = passes.admit(instance.id) if core.policy.leased_writes else None
        lease = None
        try:
            if reserved is not None:
                request = LeaseRequest(passes.owner(), core.options.lease_seconds)
                lease = await core.persistence.create_workflow(instance, lease=request)
            if lease is None:  # not reserved, or the key is held: the pass takes it
                await core.persistence.create_workflow(instance)
        except BaseException as exc:
            if reserved is not None:
                passes.withdraw(reserved)
            if isinstance(exc, (TypeError, ValueError)):
                raise self._create_error(exc, definition) from exc
            raise
        self._started(instance, definition)
        if core.lifecycle.has_subscribers:
            await core.publish_lifecycle(
                lifecycle_event(instance, LifecycleEventType.WORKFLOW_STARTED)
            )
        # A host running workers runs the first pass itself; otherwise any worker does.
        if reserved is not None:
            started = passes.launch(reserved, instance, lease)
            if not started and lease is not None:
                await passes.release(lease)
        else:
            started = passes.start(instance)
        if not started:
            await core.enqueue_workflow(instance.id)
        await core.enqueue_index(instance.id)
        return instance.id

    @staticmethod
    def _started(instance: WorkflowInstance, definition: WorkflowDefinition) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return  # without building the record's extra fields (every start)
        logger.info(
            "started workflow %s v%s",
            definition.id,
            definition.version,
            extra={"workflow_id": instance.id, "definition_id": definition.id},
        )

    @staticmethod
    def _create_error(error: BaseException, definition: WorkflowDefinition) -> BaseException:
        """What ``start_workflow`` raises when the store refused the new instance."""
        if isinstance(error, (TypeError, ValueError)):
            # A value the definition's data type does not declare (a dict's values, an
            # ``Any`` field) that the store cannot encode: nothing was stored.
            wrapped = InvalidInputError(
                definition.id, [f"the workflow data cannot be stored: {error}"]
            )
            wrapped.__cause__ = error
            return wrapped
        return error

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance with its data restored to the definition's data type."""
        return await self._core.load(workflow_id)

    async def get_workflow_pointers(
        self, workflow_id: str, *, skip: int = 0, take: int = 100
    ) -> Page[ExecutionPointer]:
        """A page of the workflow's execution pointers, in the order they were created:
        ``take`` of them from position ``skip`` on, with ``total``, how many it has. For
        showing a long history without reading it whole (:meth:`get_workflow` returns every
        pointer); ``WorkflowNotFoundError`` for an unknown id."""
        return await self._core.persistence.get_pointers(workflow_id, skip=skip, take=take)

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
        core = self._core
        page = await core.persistence.list_workflows(
            status=None if status is None else WorkflowStatus(status),
            definition_id=definition_id,
            reference=reference,
            skip=skip,
            take=take,
        )
        return Page([core.restore(i) for i in page.items], page.total, page.skip, page.take)

    async def list_stuck_workflows(
        self,
        *,
        overdue: timedelta = timedelta(minutes=1),
        definition_id: str | None = None,
        skip: int = 0,
        take: int = 100,
    ) -> Page[StuckWorkflow]:
        """Workflows that are due but not moving: runnable, due for longer than ``overdue``
        and leased by no worker, newest first, each with the last error recorded on it.
        Typically a definition version no worker has registered (its error says so), or no
        worker running on the store."""
        if overdue < timedelta(0):
            raise ValueError(f"list_stuck_workflows: overdue must not be negative, got {overdue}")
        return await find_stuck(
            self._core, overdue=overdue, definition_id=definition_id, skip=skip, take=take
        )

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
        core = self._core
        if core.search_index is not None:
            page = await core.search_index.search(text, filters=filters, skip=skip, take=take)
            return Page([core.restore(i) for i in page.items], page.total, page.skip, page.take)
        matches = [
            i async for i in queries.scan(core, filters or {}) if queries.matches_text(i, text)
        ]
        return Page(matches[skip : skip + take], len(matches), skip, take)

    async def wait_for_workflow(
        self,
        workflow_id: str,
        timeout: float | None = None,
    ) -> WorkflowInstance:
        """Wait until the workflow is complete, failed or terminated and return it.

        Woken by a host of this process sharing this one's lifecycle publisher finishing it,
        or by the watcher of a distributed lifecycle publisher. On a store shared with other
        processes without such a publisher, it also reads the workflow again every second
        (not while this host is running it), in case another process finishes it. Raises
        :class:`~wfe_core.errors.WorkflowTimeoutError` after ``timeout`` seconds.
        """
        return await wait_until_finished(self._core, self.passes.running, workflow_id, timeout)

    def awaited_workflows(self) -> frozenset[str]:
        """The ids of the workflows :meth:`wait_for_workflow` calls are waiting for here (and
        in the hosts of this process sharing this one's in-process lifecycle publisher, who
        wake each other's waiters): for tests and diagnostics."""
        return self._core.waiters.workflow_ids()

    def lifecycle_events(self) -> AsyncIterator[LifecycleEvent]:
        """Lifecycle events from now on (``async for event in client.lifecycle_events()``)."""
        return self._core.lifecycle.subscribe()

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
        core = self._core
        time = effective_date or core.clock.now()
        event = Event(
            name=name, key=str(key), data=data, time=time, trace_context=core.trace_context()
        )
        return await self.events.publish(event)

    # -- activities (external workers) ------------------------------------------------------
    async def get_pending_activity(
        self,
        activity_name: str,
        worker_id: str,
        timeout: float | timedelta | None = None,
        *,
        lease: float | timedelta = DEFAULT_ACTIVITY_LEASE,
    ) -> PendingActivity | None:
        """Take the oldest activity ``activity_name`` waiting for a worker: its ``token``
        and ``parameters``, or ``None`` when none came within ``timeout`` (seconds or a
        timedelta; ``None``: do not wait).

        The activity is this worker's for ``lease`` (default 5 minutes): no other worker
        gets it meanwhile, also in other processes on the same store. Past it (a worker
        that died), another worker may take it, and this token is refused from then on.
        Works without workers here: a process serving activities needs only a client."""
        return await self.external.get_pending_activity(
            activity_name, worker_id, timeout, lease=lease
        )

    async def submit_activity_success(self, token: str, result: Any = None) -> None:
        """Complete the activity taken with ``token`` with ``result`` (JSON-compatible):
        its step goes on with ``step.result``. Raises
        :class:`~wfe_core.errors.ActivityTokenError` when the token is not the activity's
        current claim (lapsed and taken again, released, or the activity is done)."""
        await self.external.submit_success(token, result)

    async def submit_activity_failure(self, token: str, error: Any) -> None:
        """Fail the activity taken with ``token`` with ``error`` (a message or
        JSON-compatible details): its step raises
        :class:`~wfe_core.errors.ActivityFailedError` and its error behaviour applies.
        Refuses a stale token as :meth:`submit_activity_success` does."""
        await self.external.submit_failure(token, error)

    async def release_activity(self, token: str) -> bool:
        """Hand the activity taken with ``token`` back, so another worker can take it at
        once. ``False`` when the token was no longer its claim."""
        return await self.external.release(token)

    # -- user tasks (people) -------------------------------------------------------------------
    async def get_open_user_actions(
        self, workflow_id: str | None = None, assigned_to: str | None = None
    ) -> list[OpenUserAction]:
        """The user tasks waiting for an answer (of ``workflow_id``, assigned to
        ``assigned_to``, when given), oldest first: ``.key``, ``.prompt``,
        ``.assigned_to``, ``.options``."""
        return await self.external.open_user_actions(workflow_id, assigned_to)

    async def publish_user_action(self, key: str, user: str, value: Any) -> str:
        """Answer the user task ``key`` as ``user`` with ``value``, one of its options'
        values; returns the event id. Raises :class:`~wfe_core.errors.UserActionError`,
        publishing nothing, when no open task has that key or ``value`` is not an option."""
        return await self.external.publish_user_action(key, user, value)

    # -- control -----------------------------------------------------------------------------
    async def suspend_workflow(self, workflow_id: str) -> bool:
        """Suspend a runnable workflow (running steps finish first). False when it was not
        runnable."""
        return await self.control.suspend_workflow(workflow_id)

    async def resume_workflow(self, workflow_id: str) -> bool:
        """Resume a suspended workflow. False when it was not suspended."""
        return await self.control.resume_workflow(workflow_id)

    async def terminate_workflow(self, workflow_id: str) -> bool:
        """Terminate a workflow that has not finished, cancelling its running steps, and its
        unfinished child workflows (recursively: parent close policy "terminate"). False when
        it had already finished.

        The children are terminated through events stored in the parent's terminating write,
        delivered here before returning; should this process die first, another host (or this
        one after a restart) delivers them.
        """
        return await self.control.terminate_workflow(workflow_id)

    async def purge(
        self,
        older_than: timedelta | datetime = timedelta(days=7),
        statuses: Iterable[WorkflowStatus | str] = ("complete", "terminated", "failed"),
    ) -> int:
        """Delete finished instances (in ``statuses``) that finished before ``older_than``
        ago (or before that datetime). Returns how many were deleted."""
        core = self._core
        now = core.clock.now()
        cutoff = now - older_than if isinstance(older_than, timedelta) else older_than
        wanted = [WorkflowStatus(s) for s in statuses]
        doomed: list[str] = []
        if core.search_index is not None:
            for status in wanted:
                doomed += [
                    i.id
                    async for i in queries.scan(core, {"status": status})
                    if i.complete_time is not None and i.complete_time < cutoff
                ]
        count = await core.persistence.purge_workflows(older_than=cutoff, statuses=wanted)
        if core.search_index is not None:
            for workflow_id in doomed:
                await core.search_index.remove_workflow(workflow_id)
        return count
