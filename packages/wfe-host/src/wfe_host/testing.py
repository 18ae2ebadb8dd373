"""A test kit for your own workflows: a real host on a clock that moves only when told to.

:class:`WorkflowTestEnvironment` runs a :class:`~wfe_host.WorkflowHost` (in-memory providers
unless given a persistence provider) on a :class:`~wfe_core.testing.ManualClock`.
:meth:`~WorkflowTestEnvironment.advance` moves that clock forward and runs, at once and in
order, everything that falls due meanwhile: delays, schedules, recurs, ``wait_for``
timeouts, retry intervals, user task escalations; ``answer_user_task`` and
``complete_activity`` play the person and the external worker. A workflow that sleeps thirty
days is tested in milliseconds::

    async def test_reminder_is_sent_after_a_day():
        async with WorkflowTestEnvironment(reminder_flow) as env:
            env.substitute_step("Send email", record_email)   # no real email in tests
            workflow_id = await env.start_workflow("reminder", {"to": "ann"})
            await env.advance(timedelta(days=1))
            instance = await env.get_workflow(workflow_id)
            assert instance.status == WorkflowStatus.COMPLETE

Needs the ``testing`` extra (``pip install "wfe-host[testing]"``), like
:mod:`wfe_core.testing`. See docs/testing-workflows.md.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.lowlevel import checkpoint

from wfe_core.errors import WfeError
from wfe_core.memory import MemoryLock, MemoryQueue
from wfe_core.models import WorkflowStatus
from wfe_core.providers import QueueName
from wfe_core.testing.clock import DEFAULT_START, ManualClock
from wfe_host.host import WorkflowHost
from wfe_host.options import HostOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

    from wfe_core import StepBody, StepContext, StepMiddleware
    from wfe_core.models import (
        OpenUserAction,
        PendingActivity,
        WorkflowDefinition,
        WorkflowInstance,
    )
    from wfe_core.providers import PersistenceProvider, QueueMessage

__all__ = ["ManualClock", "NotSettledError", "NothingWaitingError", "WorkflowTestEnvironment"]

logger = logging.getLogger("wfe_host.testing")

#: Real seconds :meth:`WorkflowTestEnvironment.settle` waits for the host to go idle.
SETTLE_TIMEOUT = 30.0
#: Real seconds between two looks while steps still run (only then: idle is seen at once).
_LOOK = 0.002
#: Turns every other task gets before the host is looked at (see ``_idle``).
_TURNS = 8


class NotSettledError(WfeError):
    """The host kept working for longer than the test allowed (a step that never returns,
    a workflow that loops without waiting)."""


class NothingWaitingError(WfeError, LookupError):
    """:meth:`WorkflowTestEnvironment.answer_user_task` found no open user task (or several)
    matching, or :meth:`WorkflowTestEnvironment.complete_activity` no activity of that name
    waiting for a worker: the workflow is not where the test expects it."""


#: Who answers user tasks and takes activities in the environment, unless told otherwise.
TEST_USER = "test-user"
TEST_WORKER = "test-worker"


class _CountingQueue(MemoryQueue):
    """A memory queue that also knows how many items are handed out and not acked yet, so
    the environment can tell when the host is idle."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.delivered: set[str] = set()

    async def dequeue(
        self, queue: QueueName, *, timeout: float = 0.0, visibility_timeout: float = 30.0
    ) -> QueueMessage | None:
        message = await super().dequeue(
            queue, timeout=timeout, visibility_timeout=visibility_timeout
        )
        if message is not None:
            self.delivered.add(message.receipt)
        return message

    async def ack(self, message: QueueMessage) -> None:
        await super().ack(message)
        self.delivered.discard(message.receipt)

    async def requeue(self, message: QueueMessage, *, delay: float = 0.0) -> None:
        await super().requeue(message, delay=delay)
        self.delivered.discard(message.receipt)

    async def pending(self) -> int:
        """Items waiting or handed out, in every queue."""
        waiting = 0
        for name in QueueName:
            waiting += await self.size(name)
        return waiting + len(self.delivered)


class WorkflowTestEnvironment:
    """A :class:`~wfe_host.WorkflowHost` on a :class:`~wfe_core.testing.ManualClock`, with
    helpers that move time and wait until the host has nothing left to do.

    ``definitions`` are registered as the environment opens. ``persistence`` defaults to a
    fresh in-memory store (give a SQLite one to test against it); the lock and the queue are
    always in-memory. ``start`` is where the clock starts (a fixed, repeatable moment by
    default). ``options`` are the host's (``shutdown_grace`` defaults to 0 here: leaving
    cancels what still runs).

    Time moves only through :meth:`advance` (and :attr:`clock`): every time the engine
    records (step start and end times, due times, event times) is on that clock, so tests
    can compare them exactly.
    """

    def __init__(
        self,
        *definitions: WorkflowDefinition,
        persistence: PersistenceProvider | None = None,
        start: datetime = DEFAULT_START,
        options: HostOptions | None = None,
        step_middleware: Iterable[StepMiddleware] = (),
    ) -> None:
        #: The clock the host runs on.
        self.clock = ManualClock(start)
        self._queue = _CountingQueue(self.clock)
        #: The host (everything a ``WorkflowHost`` does is there).
        self.host = WorkflowHost(
            persistence=persistence,
            lock=MemoryLock(clock=self.clock),
            queue=self._queue,
            options=options or HostOptions(shutdown_grace=0.0),
            step_middleware=step_middleware,
            clock=self.clock,
        )
        for definition in definitions:
            self.host.register(definition)

    async def __aenter__(self) -> Self:
        await self.host.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.host.__aexit__(exc_type, exc, tb)

    # -- setting up ----------------------------------------------------------------------
    def register(self, definition: WorkflowDefinition) -> WorkflowDefinition:
        """Register ``definition`` on the host."""
        return self.host.register(definition)

    def substitute_step(
        self, name: str, replacement: type[StepBody] | Callable[[StepContext], Any]
    ) -> None:
        """Run ``replacement`` instead of every step named ``name`` (see
        :meth:`WorkflowHost.substitute_step <wfe_host.WorkflowHost.substitute_step>`)."""
        self.host.substitute_step(name, replacement)

    # -- acting --------------------------------------------------------------------------
    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        version: int | None = None,
        reference: str | None = None,
    ) -> str:
        """Start a workflow and run it until it waits (for time or an event) or ends."""
        workflow_id = await self.host.start_workflow(
            definition_id, data, version=version, reference=reference
        )
        await self.settle()
        return workflow_id

    async def publish_event(
        self,
        name: str,
        key: str,
        data: Any = None,
        effective_date: datetime | None = None,
    ) -> str:
        """Publish an event (its time: the clock's now unless ``effective_date``) and run
        what it wakes until the host is idle again."""
        event_id = await self.host.publish_event(name, key, data, effective_date=effective_date)
        await self.settle()
        return event_id

    async def get_workflow(self, workflow_id: str) -> WorkflowInstance:
        """The stored instance (its data as the definition's data type)."""
        return await self.host.get_workflow(workflow_id)

    # -- people and external workers -----------------------------------------------------
    async def open_user_tasks(
        self, workflow_id: str | None = None, assigned_to: str | None = None
    ) -> list[OpenUserAction]:
        """The user tasks waiting for an answer, oldest first (as
        ``WorkflowHost.get_open_user_actions`` lists them)."""
        return await self.host.get_open_user_actions(workflow_id, assigned_to)

    async def answer_user_task(
        self,
        value: Any,
        *,
        workflow_id: str | None = None,
        prompt: str | None = None,
        user: str = TEST_USER,
    ) -> OpenUserAction:
        """Answer the one open user task (of ``workflow_id``, with ``prompt``, when given)
        with ``value`` as ``user``, and run what the answer wakes until the host is idle.
        Returns the task answered. Raises :class:`NothingWaitingError` when no open task, or
        more than one, matches (naming the open ones), and
        :class:`~wfe_core.errors.UserActionError` when ``value`` is not one of its options."""
        await self.settle()
        open_tasks = await self.host.get_open_user_actions(workflow_id)
        matching = [t for t in open_tasks if prompt is None or t.prompt == prompt]
        if len(matching) != 1:
            wanted = " ".join(
                part
                for part in (
                    "" if workflow_id is None else f"of workflow {workflow_id}",
                    "" if prompt is None else f"asking {prompt!r}",
                )
                if part
            )
            listed = "; ".join(f"{t.prompt!r} (workflow {t.workflow_id})" for t in open_tasks)
            found = "no open user task" if not matching else f"{len(matching)} open user tasks"
            raise NothingWaitingError(
                f"answer_user_task: {found}{' ' + wanted if wanted else ''} "
                f"(open: {listed or 'none'})"
                + ("; say which with workflow_id= or prompt=" if matching else "")
            )
        task = matching[0]
        await self.host.publish_user_action(task.key, user=user, value=value)
        await self.settle()
        return task

    async def complete_activity(
        self, activity_name: str, result: Any = None, *, worker_id: str = TEST_WORKER
    ) -> PendingActivity:
        """Take the oldest activity ``activity_name`` waiting for a worker, as ``worker_id``,
        submit ``result`` for it, and run what follows until the host is idle. Returns the
        activity taken (``.parameters`` are what a worker would have got). Raises
        :class:`NothingWaitingError` when none waits."""
        pending = await self._take_activity(activity_name, worker_id)
        await self.host.submit_activity_success(pending.token, result)
        await self.settle()
        return pending

    async def fail_activity(
        self, activity_name: str, error: Any, *, worker_id: str = TEST_WORKER
    ) -> PendingActivity:
        """Like :meth:`complete_activity`, but the worker reports ``error`` (a message or
        JSON-compatible details): the step raises
        :class:`~wfe_core.errors.ActivityFailedError` and its error behaviour applies."""
        pending = await self._take_activity(activity_name, worker_id)
        await self.host.submit_activity_failure(pending.token, error)
        await self.settle()
        return pending

    async def _take_activity(self, activity_name: str, worker_id: str) -> PendingActivity:
        await self.settle()
        pending = await self.host.get_pending_activity(activity_name, worker_id)
        if pending is None:
            raise NothingWaitingError(
                f"{activity_name!r}: no activity of that name waits for a worker"
            )
        return pending

    # -- time ----------------------------------------------------------------------------
    async def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move the clock ``delta`` (plus ``days``, ``hours``, ``minutes`` and ``seconds``:
        ``advance(days=3)``) forward, running everything that falls due on the way in
        order: the clock stops at each due time (a retry, a delay, the next round of a
        recur, a ``wait_for`` timeout, a user task's escalation), the host runs what is due
        then until it is idle, and the clock moves on. Returns the new time. Takes no real
        time beyond the steps' own work."""
        if delta is not None and not isinstance(delta, timedelta):
            raise TypeError(f"advance: expected a timedelta, got {type(delta).__name__}")
        delta = (delta or timedelta(0)) + timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        if delta < timedelta(0):
            raise ValueError(f"advance: time does not run backwards (got {delta})")
        target = self.clock.now() + delta
        await self.settle()
        await self._run_due_until(target)
        self.clock.set(target)
        await self._run_due_until(target)
        return target

    async def run_until_finished(
        self, workflow_id: str, *, within: timedelta = timedelta(days=365)
    ) -> WorkflowInstance:
        """Move the clock from due time to due time until ``workflow_id`` finishes, at most
        ``within`` ahead; returns the finished instance. Raises :class:`NotSettledError`
        when it is still unfinished then, or waits for something no time brings (an event,
        a suspended workflow), saying what."""
        limit = self.clock.now() + within
        await self.settle()
        while True:
            instance = await self.host.get_workflow(workflow_id)
            if instance.status.is_finished:
                return instance
            due = instance.next_execution
            if instance.status != WorkflowStatus.RUNNABLE or due is None or due > limit:
                raise NotSettledError(_unfinished(instance, limit))
            if due > self.clock.now():
                self.clock.set(due)
            await self._run_due_until(self.clock.now())
            again = await self.host.get_workflow(workflow_id)
            if again.revision == instance.revision and again.next_execution == due:
                raise NotSettledError(_unfinished(again, limit) + " (nothing ran at its due time)")

    async def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until the host is idle: no pass running, nothing queued or being handled.
        Raises :class:`NotSettledError` after ``timeout`` real seconds of work."""
        host, queue = self.host, self._queue
        try:
            with anyio.fail_after(timeout):
                while True:
                    if await self._idle() and await self._idle():
                        return
                    # Steps are doing real work (or a busy item waits to come back).
                    await anyio.sleep(_LOOK)
        except TimeoutError:
            raise NotSettledError(
                f"the host was still busy after {timeout:g} s: {host.running_workflows} "
                f"workflow pass(es) running, {await queue.pending()} queued item(s)"
            ) from None

    async def _idle(self) -> bool:
        """Whether the host is idle, after letting every task that can run take
        :data:`_TURNS` turns: work handed from task to task (a pass ending, its follow-up
        being queued, a consumer taking it) is never between two owners for that long
        (each hand-over is a turn or two, on the in-memory lock and queue)."""
        for _ in range(_TURNS):
            await checkpoint()
        return not self.host.running_workflows and not await self._queue.pending()

    async def _run_due_until(self, target: datetime) -> None:
        """Run, clock time after clock time, what falls due at or before ``target``."""
        persistence = self.host.persistence
        kicked: datetime | None = None
        while True:
            due = await persistence.next_execution_time()
            if due is None or due > target:
                return
            now = self.clock.now()
            if due <= now and kicked is not None and due <= kicked:
                # Queued at this time already and still due: nothing here can run it (its
                # definition is not registered here). Look past it for the next due time.
                later = await self._next_due_after(now, target)
                if later is None:
                    return
                due = later
            if due > now:
                self.clock.set(due)
                now = due
            for workflow_id in await persistence.get_runnable_instances(now):
                await self.host.queue.enqueue(QueueName.WORKFLOW, workflow_id)
            kicked = now
            await self.settle()

    async def _next_due_after(self, now: datetime, target: datetime) -> datetime | None:
        """The earliest due time after ``now``, at or before ``target``, of the runnable
        instances (read one by one: only when an instance that cannot run is due, which
        hides the later due times from ``next_execution_time``)."""
        found: datetime | None = None
        for workflow_id in await self.host.persistence.get_runnable_instances(target):
            instance = await self.host.persistence.get_workflow(workflow_id)
            due = instance.next_execution
            if due is not None and now < due <= target and (found is None or due < found):
                found = due
        return found


def _unfinished(instance: WorkflowInstance, limit: datetime) -> str:
    waiting = sorted(
        f"{p.event_name!r} (key {p.event_key!r})"
        for p in instance.pointers
        if p.active and p.event_name is not None
    )
    what = f"; it waits for event {', '.join(waiting)}" if waiting else ""
    due = instance.next_execution
    when = f"; next due {due.isoformat()}" if due is not None else ""
    return (
        f"workflow {instance.id} is {instance.status} at {limit.isoformat()} (the limit)"
        f"{what}{when}"
    )
