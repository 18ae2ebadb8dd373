"""Waiting for workflows to finish: the waiter table, and the watcher of a distributed
lifecycle publisher that wakes it for workflows other processes finish."""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from typing import TYPE_CHECKING, Any

import anyio

from wfe_core.errors import LifecycleGapError, WorkflowTimeoutError
from wfe_core.models import LifecycleEventType, WorkflowInstance

if TYPE_CHECKING:
    from collections.abc import Container

    from anyio.abc import TaskStatus

    from wfe_core.memory import InstanceSnapshot
    from wfe_core.providers import LifecyclePublisher
    from wfe_host.runtime.core import HostCore

logger = logging.getLogger("wfe_host")

FINISHED_EVENTS = frozenset(
    {
        LifecycleEventType.WORKFLOW_COMPLETED,
        LifecycleEventType.WORKFLOW_FAILED,
        LifecycleEventType.WORKFLOW_TERMINATED,
    }
)
#: Pause before a host's finish watcher subscribes again after its subscription failed.
WATCH_RETRY = 1.0
#: Seconds between a waiter's reads of its workflow on a store other processes share.
RECHECK = 1.0


class Waiter:
    """One ``wait_for_workflow`` call: woken when its workflow finishes."""

    __slots__ = ("event", "stored")

    def __init__(self) -> None:
        self.event = anyio.Event()
        #: The finished instance as stored, when the host of this process that finished it
        #: woke the waiter: it need not read it back.
        self.stored: InstanceSnapshot | None = None

    def wake(self, stored: InstanceSnapshot | None = None) -> None:
        self.stored = stored
        self.event.set()


class Waiters:
    """The waiters of ``wait_for_workflow`` calls, by workflow id: what to wake when a
    workflow finishes."""

    def __init__(self) -> None:
        self._by_workflow: dict[str, set[Waiter]] = {}
        #: Whether a watcher of a distributed lifecycle publisher keeps these waiters informed
        #: (see :func:`watch_finished`).
        self.watching = False

    def add(self, workflow_id: str) -> Waiter:
        """A new waiter for ``workflow_id``."""
        waiter = Waiter()
        self._by_workflow.setdefault(workflow_id, set()).add(waiter)
        return waiter

    def discard(self, workflow_id: str, waiter: Waiter) -> None:
        """``waiter`` waits no more."""
        waiters = self._by_workflow.get(workflow_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._by_workflow[workflow_id]

    def waited_for(self, workflow_id: str) -> bool:
        """Whether anyone waits for ``workflow_id``."""
        return workflow_id in self._by_workflow

    def workflow_ids(self) -> frozenset[str]:
        """The workflows someone waits for."""
        return frozenset(self._by_workflow)

    def finished(self, workflow_id: str, stored: InstanceSnapshot | None = None) -> None:
        """``workflow_id`` finished: wake its waiters (with what was stored, when known)."""
        for waiter in self._by_workflow.get(workflow_id, ()):
            waiter.wake(stored)

    def pass_ended(self, workflow_id: str) -> None:
        """A pass of this host over ``workflow_id`` ended: its waiters that skipped reading
        it while it ran look again (unless the pass woke them when it finished it)."""
        for waiter in self._by_workflow.get(workflow_id, ()):
            if not waiter.event.is_set():
                waiter.wake()

    def wake_all(self) -> None:
        """Make every waiter look again."""
        for waiters in list(self._by_workflow.values()):
            for waiter in waiters:
                waiter.wake()


#: The waiter table of the hosts sharing an in-process lifecycle publisher (see waiters_for).
_LOCAL_WAITERS: weakref.WeakKeyDictionary[Any, Waiters] = weakref.WeakKeyDictionary()


def waiters_for(lifecycle: LifecyclePublisher, *, distributed: bool) -> Waiters:
    """The waiter table of a host using ``lifecycle``.

    Hosts of this process that share a publisher that is not ``distributed`` share one
    table: the host that finishes a workflow wakes every waiter of all of them directly, so
    none needs to watch the lifecycle stream. A distributed publisher also carries other
    processes' events: such a host has a table of its own and one watcher
    (:func:`watch_finished`).
    """
    if distributed:
        return Waiters()
    try:
        return _LOCAL_WAITERS.setdefault(lifecycle, Waiters())
    except TypeError:  # not hashable or not weakly referenceable: on its own, then
        return Waiters()


def recheck_after(core: HostCore) -> float:
    """How long a waiter trusts notifications alone: for ever, unless the store is shared
    with other processes while lifecycle events stay in this one (or their watcher is down);
    then another process may finish the workflow without telling us, so look again now and
    then."""
    return RECHECK if core.policy.shared_store and not core.waiters.watching else math.inf


async def wait_until_finished(
    core: HostCore, running: Container[str], workflow_id: str, timeout: float | None
) -> WorkflowInstance:
    """Wait until ``workflow_id`` is finished and return it (``wait_for_workflow``).

    ``running`` holds the workflows this host is running a pass over: their pass wakes the
    waiter when it stores the finished instance or ends, so no read is needed meanwhile.
    """
    waiters = core.waiters
    # Registered before the first read: a finish after that read wakes it.
    waiter = waiters.add(workflow_id)
    # A scope with a deadline, not ``fail_after`` (a generator context manager around one):
    # nothing else cancels it, so its cancellation is the timeout.
    deadline = math.inf if timeout is None else anyio.current_time() + timeout
    try:
        with anyio.CancelScope(deadline=deadline):
            while True:
                if waiter.event.is_set() or workflow_id not in running:
                    if waiter.event.is_set():
                        waiters.discard(workflow_id, waiter)
                        waiter = waiters.add(workflow_id)
                    # Its live part tells whether it finished (a loop's waiter looks after
                    # every pass: reading the whole instance would cost more every round).
                    live = await core.persistence.get_live_part(workflow_id)
                    if live.instance.status.is_finished:
                        if live.whole:
                            return core.restore(live.instance)
                        return await core.load(workflow_id)
                while True:
                    await _woken(waiter, recheck_after(core), workflow_id in running)
                    if waiter.event.is_set() or workflow_id not in running:
                        break
                if waiter.stored is not None:
                    return core.restore(waiter.stored.instance())
    except TimeoutError:
        pass  # any timeout inside (a provider's too) is reported as the wait's, as ever
    finally:
        waiters.discard(workflow_id, waiter)
    raise WorkflowTimeoutError(f"workflow {workflow_id} did not finish within {timeout} s")


async def _woken(waiter: Waiter, recheck: float, running_here: bool) -> None:
    """Wait for ``waiter`` to be woken, or ``recheck`` seconds at most. No deadline while
    this host runs the workflow's pass (it wakes the waiter when it stores the finished
    instance or ends: no other process can finish it meanwhile) or when notifications are
    trusted for ever: a cancel scope with a timer less per wait."""
    if running_here or recheck == math.inf:
        await waiter.event.wait()
        return
    with anyio.move_on_after(recheck):
        await waiter.event.wait()


async def watch_finished(
    core: HostCore, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Wake the waiters of workflows that other hosts finish, from a distributed lifecycle
    publisher's events: one subscription per host, however many wait. While it is not
    subscribed (its subscription failed), waiters on a durable store read again now and
    then instead."""
    waiters = core.waiters
    started = False
    while True:
        subscription = core.lifecycle.subscribe()
        try:
            # A network subscription is active only once its server confirmed it; until
            # then waiters keep reading persistence now and then.
            active = getattr(subscription, "wait_active", None)
            if active is not None:
                await active()
            waiters.watching = True
            if started:
                # Subscribed again after a failure: what finished meanwhile was announced
                # to nobody, so the waiters read persistence once more.
                waiters.wake_all()
            else:
                task_status.started()
                started = True
            async for event in subscription:
                if event.type in FINISHED_EVENTS:
                    waiters.finished(event.workflow_id)
            return  # the publisher closed: the host is stopping
        except LifecycleGapError as exc:
            # Events were lost (a reconnect): the waiters, woken below, read persistence.
            logger.warning("lifecycle events may be lost (%s); subscribing again", exc)
        except Exception:
            logger.exception("watching lifecycle events failed; subscribing again")
        finally:
            waiters.watching = False
            closer = getattr(subscription, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await closer()
        if not started:
            task_status.started()
            started = True
        # Waiters read again while it is down; wake them so they notice the change.
        waiters.wake_all()
        await anyio.sleep(WATCH_RETRY)
