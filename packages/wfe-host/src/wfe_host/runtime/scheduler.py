"""Waking instances whose sleeping work is due, without polling."""

from __future__ import annotations

import heapq
import logging
import math
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Container
    from datetime import datetime

    from wfe_host.runtime.core import HostCore

logger = logging.getLogger("wfe_host.scheduler")

#: Slack added to a due time so a wake-up is never a hair early.
_SLACK = timedelta(milliseconds=5)
#: Least time between two looks at persistence's due times. Every pass that stored a change
#: wakes the scheduler (see :meth:`Scheduler.wake`); hundreds of passes ending per second
#: should not cost hundreds of reads. (The local timers are looked at on every wake-up.)
_LOOK_INTERVAL = 0.02
#: On a store shared with other processes, how long at least an instance must have been due
#: before this host queues it from persistence's due times. Work due now is queued by
#: whoever made it due (the host whose timer holds it, a pass that ends with work due, the
#: starter of a new instance, an event's delivery), and it may wait in the queue or its pass
#: be under way on another host: queueing it here too only cost a second, idle pass (or a
#: round through the queue to find its lease taken) on some worker. The grace grows with
#: how long this host's instances stay due while handled as usual (see
#: :meth:`DueTimers.lateness`: the wait in the queue and the pass), up to the scheduler's
#: ``recovery_seconds`` or the lease time, whichever is shorter: what is due for longer than
#: that was left behind (its host stopped or died, or the queue lost it), and the leases of
#: a dead host's passes have lapsed by then.
SHARED_GRACE = timedelta(seconds=1)
#: The grace is this many times the recent lateness of the passes (see SHARED_GRACE).
_LATENESS_FACTOR = 2.0
#: Most instances remembered as queued from persistence (bounded memory).
MAX_QUEUED_MEMORY = 100_000


class DueTimers:
    """The due times this host stored (a timer heap, exact), and the scheduler's wake-up."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._wake = anyio.Event()
        #: The latest passes' lateness that counts (seconds), and when it was seen (anyio's
        #: clock); see :meth:`lateness`.
        self._late = 0.0
        self._late_at = 0.0
        #: The due time of each instance this host runs a pass over (that had one).
        self._running: dict[str, datetime] = {}
        #: The due time of each instance's latest note still in the heap: an older entry of
        #: the same instance is stale (a later write of this host moved or ended its due
        #: time) and is dropped when it comes up, instead of queueing a pass with nothing to
        #: do.
        self._latest: dict[str, datetime] = {}
        #: The scheduler sleeps until a look at persistence's due times that it put off to
        #: keep the least interval between two looks (see :meth:`pass_stored`).
        self.look_pending = False
        #: anyio's clock (read as passes start and end): read directly once the host runs
        #: in an event loop (see :meth:`use_clock`).
        self._clock: Callable[[], float] = anyio.current_time

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Read anyio's clock through ``clock`` (``leases.loop_clock()`` of the event loop
        the host runs in) from now on."""
        self._clock = clock

    def note(self, workflow_id: str, due: datetime) -> None:
        """This host stored ``workflow_id`` due at ``due``: queue it then."""
        heapq.heappush(self._heap, (due, workflow_id))
        self._latest[workflow_id] = due
        self._wake.set()

    def forget(self, workflow_id: str) -> None:
        """This host stored ``workflow_id`` with no due time (it waits, or it finished): what
        was noted for it before is stale."""
        self._latest.pop(workflow_id, None)

    def wake(self) -> None:
        """Make the scheduler look at the due times again."""
        self._wake.set()

    def pass_stored(self) -> None:
        """A pass of this host stored its instance and ended: the scheduler is to look at
        persistence's due times again (it may have been waiting for this pass before it
        looks at the next due time), within its least interval between two looks. When a
        look is already due at the end of that interval (see :attr:`look_pending`), that
        look comes after this pass's writes: no wake-up needed (with one workflow after
        another, nearly every pass ends in one)."""
        if not self.look_pending:
            self._wake.set()

    def arm(self) -> anyio.Event:
        """A new wake-up event for the scheduler to wait on (set by the next note or wake)."""
        self._wake = anyio.Event()
        return self._wake

    def pop_due(self, now: datetime) -> list[str]:
        """The workflows noted due at or before ``now``, removed from the heap."""
        due: list[str] = []
        latest = self._latest
        while self._heap and self._heap[0][0] <= now:
            at, workflow_id = heapq.heappop(self._heap)
            if latest.get(workflow_id) == at:
                del latest[workflow_id]
                due.append(workflow_id)
        return due

    def next_due(self) -> datetime | None:
        """The earliest due time noted, if any."""
        return self._heap[0][0] if self._heap else None

    def pass_started(self, workflow_id: str, due: datetime, now: datetime) -> None:
        """A pass of this host over ``workflow_id``, due at ``due``, starts at ``now``."""
        self._running[workflow_id] = due
        self._ran_late((now - due).total_seconds())

    def pass_ended(self, workflow_id: str, now: datetime) -> None:
        """The pass over ``workflow_id`` (see :meth:`pass_started`) ended at ``now``."""
        due = self._running.pop(workflow_id, None)
        if due is not None:
            self._ran_late((now - due).total_seconds())

    def _ran_late(self, seconds: float) -> None:
        # How long an instance was due when its pass started or ended (its wait in the
        # queue, and then the pass's own time).
        if seconds > self.lateness():
            self._late, self._late_at = seconds, self._clock()

    def lateness(self, now: datetime | None = None) -> float:
        """How long instances stay due here lately while queued and run: the largest such
        time seen as passes started and ended, less the time since (a queue that drained
        is forgotten as fast as time passes), or, given ``now``, how long the passes under
        way have been due, when that is longer."""
        seen = max(self._late - (self._clock() - self._late_at), 0.0)
        if now is None or not self._running:
            return seen
        oldest = min(self._running.values())
        return max(seen, (now - oldest).total_seconds())

    def grace(self, longest: float, now: datetime) -> timedelta:
        """How long an instance must have been due at ``now`` before the scheduler queues it
        from a shared store's due times (see :data:`SHARED_GRACE`), at most ``longest``
        seconds (unless that is shorter than SHARED_GRACE)."""
        seconds = min(self.lateness(now) * _LATENESS_FACTOR, longest)
        return max(SHARED_GRACE, timedelta(seconds=seconds))


class Scheduler:
    """Queues instances when their sleeping work falls due.

    Two sources of due times: the ones this host stores (kept in a local timer heap, exact),
    and persistence's earliest ``next_execution`` of any runnable instance (work scheduled
    before this host started, or by other processes). The scheduler sleeps until the earliest
    of them or until woken.

    An instance stays due while its pass runs, which hides later due times behind it in
    persistence; so after queueing what persistence says is due, the scheduler does not look
    at that same due time again until woken (a pass stored a change) or ``recovery_seconds``
    passed (a pass that could not run: no definition here, another worker's lease).

    The same recovery wake-up queues again, every ``recovery_seconds``, stored events still
    unprocessed ``recovery_seconds`` after their time: an event stored with an instance
    whose writer died before queueing it (a child's notification of its parent), on a store
    other processes share. (The host queues all unprocessed events once at start-up.)
    """

    def __init__(
        self, core: HostCore, running: Container[str], *, recovery_seconds: float | None = None
    ) -> None:
        self.core = core
        #: The workflows this host is running a pass over.
        self.running = running
        self.recovery_seconds = (
            core.options.recovery_seconds if recovery_seconds is None else recovery_seconds
        )
        self._dispatched_due: datetime | None = None
        self._dispatched_at = -math.inf
        self._events_swept_at = -math.inf
        self._looked_at = -math.inf
        #: Instances this scheduler queued from persistence's due times, and when (anyio's
        #: clock): not queued again from there for ``recovery_seconds`` while they stay due.
        #: An instance stays due while it waits in the queue or its pass runs (here or
        #: elsewhere), and each change of the earliest due time means a new look: without
        #: this, every look would queue the same instances again.
        self._queued: dict[str, float] = {}

    @property
    def longest_sleep(self) -> float:
        """How long the scheduler may sleep without looking: for ever on a store private to
        this process (every change wakes it); ``recovery_seconds`` on a durable store other
        processes share, whose new due times this host is not told about."""
        return self.recovery_seconds if self.core.policy.shared_store else math.inf

    def wake(self) -> None:
        """Make the scheduler look at the due times again."""
        self.core.timers.wake()

    async def run(self) -> None:
        """Run until cancelled."""
        # The host swept the events at start-up; the next sweep is one period away.
        self._events_swept_at = anyio.current_time()
        while True:
            # Replaced before looking, so a wake-up that races the look is never missed.
            wake = self.core.timers.arm()
            try:
                timeout = await self._dispatch()
            except Exception:
                # Keep scheduling whatever a provider raised; the next look may succeed.
                logger.exception("scheduling failed; trying again shortly")
                timeout = 1.0
            with anyio.move_on_after(timeout):
                await wake.wait()

    async def _dispatch(self) -> float:
        """Queue what is due; return how long to sleep before looking again."""
        core = self.core
        timers = core.timers
        now = core.clock.now()
        for workflow_id in timers.pop_due(now):
            await core.enqueue_workflow(workflow_id)
        waits = [self.longest_sleep]
        next_due = timers.next_due()
        if next_due is not None:
            waits.append((next_due - now + _SLACK).total_seconds())
        if self.longest_sleep < math.inf:
            # A store shared with other processes: sweep stored events someone left behind.
            clock = anyio.current_time()
            if clock - self._events_swept_at >= self.recovery_seconds:
                self._events_swept_at = clock
                # Younger events are likely on their way through the queue.
                await core.recover_events(now - timedelta(seconds=self.recovery_seconds))
            waits.append(self._events_swept_at + self.recovery_seconds - clock)
        clock = anyio.current_time()
        # On a shared store the look is a recovery (what fell due lately is left to others,
        # see SHARED_GRACE): looking more often than that grace finds nothing sooner.
        interval = SHARED_GRACE.total_seconds() if self.core.policy.shared_store else _LOOK_INTERVAL
        if clock - self._looked_at < interval:
            waits.append(self._looked_at + interval - clock)
            timers.look_pending = True
            return max(min(waits), 0.0)
        self._looked_at = clock
        timers.look_pending = False
        due = await core.persistence.next_execution_time()
        # On a shared store, what fell due only just now is someone else's to queue (see
        # SHARED_GRACE); on a private one everything due is this host's.
        if self.core.policy.shared_store:
            # At most a lease's time: a dead or paused host's running instances are taken
            # over as soon as their leases lapse.
            longest = min(self.recovery_seconds, core.options.lease_seconds)
            cutoff = now - timers.grace(longest, now)
        else:
            cutoff = now
        if due is not None and due > cutoff:
            waits.append((due - cutoff + _SLACK).total_seconds())
        elif due is not None:
            clock = anyio.current_time()
            if due != self._dispatched_due or clock - self._dispatched_at >= self.recovery_seconds:
                await self._queue_due(cutoff, clock)
                self._dispatched_due, self._dispatched_at = due, clock
            waits.append(self._dispatched_at + self.recovery_seconds - clock)
        return max(min(waits), 0.0)

    async def _queue_due(self, cutoff: datetime, clock: float) -> None:
        """Queue the instances persistence says are due at ``cutoff``, but for the ones this
        host runs and the ones it queued from here in the last ``recovery_seconds``."""
        core = self.core
        # Not the instances this host is running: they are due because their pass started
        # steps, and the pass itself queues them again when it ends with work due (or lost
        # its lease, or its view went stale); queueing them here only cost each one a
        # second, idle pass.
        running = self.running
        forget = clock - self.recovery_seconds
        before = self._queued
        # Rebuilt from what is due now: an instance no longer due was run, and is queued
        # again when it falls due again.
        queued: dict[str, float] = {}
        for workflow_id in await core.persistence.get_runnable_instances(cutoff):
            if workflow_id in running:
                continue
            at = before.get(workflow_id)
            if at is None or at <= forget:
                await core.enqueue_workflow(workflow_id)
                at = clock
            if len(queued) < MAX_QUEUED_MEMORY:
                queued[workflow_id] = at
        self._queued = queued
