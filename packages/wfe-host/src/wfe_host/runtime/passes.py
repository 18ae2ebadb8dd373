"""Running passes over instances under a lease, and changing instances from outside a pass
(suspend, resume, terminate, event delivery) under the same lease."""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import attrs

from wfe_core import WorkflowExecutor
from wfe_core.errors import (
    ConcurrencyError,
    LockNotHeldError,
    StaleLeaseError,
    WfeError,
    WorkflowNotFoundError,
)
from wfe_core.memory import json_copy
from wfe_core.models import (
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    LifecycleEventType,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.providers import Lease, LeaseRequest, PointerWrite
from wfe_core.serialization import to_primitive
from wfe_core.spi import stored_pointers
from wfe_host.runtime.control import lifecycle_event
from wfe_host.runtime.data import restore_error
from wfe_host.runtime.holders import BusyNotices
from wfe_host.runtime.leases import LeaseRenewer, ensure_current, fresh_token, loop_clock

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from wfe_core import HostContext, StepBody
    from wfe_core.models import (
        Event,
        LifecycleEvent,
        StepDefinition,
    )
    from wfe_core.providers import LivePart
    from wfe_host.runtime.core import HostCore

logger = logging.getLogger("wfe_host.passes")

#: Seconds before a worker tries again an instance whose lease another worker holds.
BUSY_RETRY = 0.5
#: Seconds a new instance waits for a slot of the host that created it before it is queued
#: for any worker: a burst a little larger than ``concurrency`` is run here as slots free,
#: without a round through the queue, while a host busy for longer shares its new work.
START_WAIT = 1.0


@attrs.define(eq=False)
class PassHandle:
    """A pass running in this host: lets other tasks stop or cancel it, or act after it."""

    workflow_id: str
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    #: Finish the running steps, start no new ones (suspend).
    stop: bool = False
    #: Work arrived for the instance during the pass: run another pass after it.
    rerun: bool = False
    #: The pass stored the instance (its due time may have changed), under its lease.
    stored: bool = False
    #: Called after the pass released its lease.
    after: list[Callable[[], Awaitable[None]]] = attrs.field(factory=list)
    #: The lease the pass holds (the renewed one once renewed), and when (anyio's clock) it
    #: was last taken or renewed.
    lease: Lease | None = None
    leased_at: float = 0.0
    #: Held while the lease is renewed, taken again, or given back by a write (see
    #: ``runtime.leases``). No yield when free: a pass gives its lease back once.
    lease_guard: anyio.Lock = attrs.field(factory=lambda: anyio.Lock(fast_acquire=True))
    #: The pass holds one of the runner's slots itself (it did not come through the queue,
    #: whose consumer holds the slot of what it hands out).
    slot: bool = False


class Outcome:
    """Whether something another task was to do (store a write) got done, once known."""

    def __init__(self) -> None:
        self._known = anyio.Event()
        self.ok = False
        #: The error that kept it from being done, when one did.
        self.error: BaseException | None = None

    def set(self, *, ok: bool, error: BaseException | None = None) -> None:
        """Record the outcome (the first one recorded stands)."""
        if not self._known.is_set():
            self.ok = ok
            self.error = error
            self._known.set()

    async def wait(self) -> bool:
        await self._known.wait()
        return self.ok


@attrs.define(eq=False)
class Carried:
    """Changes made to an instance under its lease that the pass taking the lease over
    (:meth:`PassRunner.hand_over`) stores with its first write: an event's delivery."""

    #: Subscriptions to store with the instance (the delivered one, closed).
    subscriptions: list[EventSubscription]
    #: Pointers changed.
    pointers: list[str]
    #: The same with their stored positions, when they were changed in a live part (see
    #: ``LivePart``): a write of it names its pointers by position.
    positioned: list[tuple[int, ExecutionPointer]] = attrs.field(factory=list)
    #: Whether the pass stored them (known once it did, or ended without doing so).
    stored: Outcome = attrs.field(factory=Outcome)

    def named_in(self, write: PointerWrite) -> PointerWrite:
        """``write`` naming the carried pointers too (each once)."""
        named = {position for position, _ in write.changed}
        extra = [each for each in self.positioned if each[0] not in named]
        return attrs.evolve(write, changed=[*write.changed, *extra]) if extra else write


#: Instances remembered as reported (bounded memory).
MAX_REMEMBERED = 1024


def undefined_prefix(instance: WorkflowInstance) -> str:
    """How the error recorded on an instance whose definition version a worker lacks
    begins (one such error is recorded, whichever worker finds it first)."""
    return f"definition {instance.definition_id!r} v{instance.version} is not registered"


def _versions(core: HostCore, definition_id: str) -> str:
    versions = sorted(d.version for d in core.definitions if d.id == definition_id)
    return ", ".join(f"v{v}" for v in versions) if versions else "no version of it"


@attrs.define(eq=False)
class Creation:
    """A new instance that its first pass stores (:meth:`PassRunner.create`): the pass's
    first write creates it, so starting a workflow and storing its first step's start take
    one commit instead of two."""

    #: The instance as the caller made it (no pointers): what is created first when the
    #: pass's first write holds more than pointers and data (subscriptions, errors, the end
    #: of the workflow), which the normal write then stores.
    instance: WorkflowInstance
    #: The lease's owner, when the write creating the instance takes the pass's lease too
    #: (``policy.leased_writes``); ``None``: the pass took it before.
    owner: str | None = None
    #: Known once the instance is stored (``ok``), or once the pass ended without storing
    #: it: with the error the store raised, or none (the lease could not be taken, the host
    #: stopped), and then nothing was stored.
    stored: Outcome = attrs.field(factory=Outcome)


class _NotCreated(Exception):
    """The first write of a :class:`Creation`'s pass was refused (its caller gets why)."""


def contains(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` is ``kind`` or an exception group holding only such errors."""
    if isinstance(error, BaseExceptionGroup):
        return all(contains(inner, kind) for inner in error.exceptions)
    return isinstance(error, kind)


def _message(error: BaseException) -> str:
    """The message of ``error``, or of the first error in an exception group."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return str(error)


class _PassEnvironment:
    """What the executor needs, bound to one instance's pass."""

    def __init__(
        self,
        core: HostCore,
        context: HostContext,
        instance: WorkflowInstance,
        handle: PassHandle,
        carried: Carried | None = None,
        creation: Creation | None = None,
    ) -> None:
        self.core = core
        self.context = context
        #: The pass: its lease's token goes with every write.
        self.handle = handle
        self.finished = instance.status.is_finished
        self.stored_due: datetime | None = None
        self.stored = False
        #: Changes made before the pass, stored by its first write.
        self.carried = carried
        #: The instance is not stored yet: the first write creates it.
        self.creation = creation
        #: anyio's clock, read before each write to see whether the lease is still young.
        self.loop_time = loop_clock()

    @property
    def host_context(self) -> HostContext:
        return self.context

    async def persist(
        self,
        instance: WorkflowInstance,
        *,
        subscriptions: Sequence[EventSubscription],
        errors: Sequence[ExecutionError],
        closed_subscriptions: Sequence[str],
        changed_pointers: Collection[str],
        outbox: Sequence[Event] = (),
        last: bool = False,
        pointer_write: PointerWrite | None = None,
    ) -> None:
        finishing = instance.status.is_finished and not self.finished
        if self.creation is not None:
            plain = not (subscriptions or errors or closed_subscriptions or outbox or finishing)
            await self._create(instance, plain=plain)
            if plain:
                self._stored(instance)
                return
        # The write that finishes a child also stores its parent's notification (an outbox):
        # published after the write, a crash in between would leave the parent waiting.
        events = await self.core.finished_events(instance, errors) if finishing else []
        if outbox:
            # The engine's own (terminating the children of cancelled sub-workflow steps):
            # the trace they continue is the pass's.
            trace = self.core.trace_context()
            events.extend(attrs.evolve(event, trace_context=trace) for event in outbox)
        carried = self.carried
        if carried is not None:
            subscriptions = [*subscriptions, *carried.subscriptions]
            changed_pointers = {*changed_pointers, *carried.pointers}
            if pointer_write is not None:
                pointer_write = carried.named_in(pointer_write)
        core = self.core
        # The lease's age first (no call into the lock while it is young: every write).
        fence = fresh_token(self.handle, core.options.lease_seconds, self.loop_time())
        if fence is None:
            fence = await ensure_current(
                core.lock, self.handle, core.options.lease_seconds, renewals=core.telemetry
            )
        write = partial(
            core.store,
            instance,
            subscriptions=subscriptions,
            errors=errors,
            closed_subscriptions=closed_subscriptions,
            events=events,
            changed_pointers=changed_pointers,
            pointer_write=pointer_write,
        )
        # The pass's last write gives its lease back when the store keeps the lock's leases
        # (one transaction fewer per pass). Not one closing subscriptions: those are closed
        # after the write, and another worker must not run the instance before.
        if last and core.policy.leased_writes and not closed_subscriptions:
            await self._write_releasing(write)
        else:
            await write(fence=fence)
        if carried is not None:
            self.carried = None
            carried.stored.set(ok=True)
        self._stored(instance)
        if finishing:
            self.finished = True
            await self.core.on_finished(instance)

    async def _write_releasing(self, write: Callable[..., Awaitable[None]]) -> None:
        """Make the pass's last write, giving its lease back in it (``release=``): under
        the lease's guard, so the renewer never renews (nor takes again) a lease that is
        being given back."""
        handle = self.handle
        async with handle.lease_guard:
            lease = handle.lease
            if lease is None:
                raise LockNotHeldError(f"workflow {handle.workflow_id}: the pass holds no lease")
            try:
                await write(release=lease)
            except LockNotHeldError:
                handle.lease = None  # not current: the write stored nothing, nothing to free
                raise
            handle.lease = None

    def _stored(self, instance: WorkflowInstance) -> None:
        """What was last stored, so the runner can tell work that fell due meanwhile."""
        self.stored = True
        self.handle.stored = True
        self.stored_due = (
            instance.next_execution if instance.status == WorkflowStatus.RUNNABLE else None
        )

    async def _create(self, instance: WorkflowInstance, *, plain: bool) -> None:
        """The pass's first write of a new instance: create it as it is now (``plain``: its
        pointers and data are all the write holds), or as its caller made it, for the
        normal write that follows to store the rest in the same order as ever (a child's end
        and its parent's notification in one write). Nothing else can know the instance
        before it is stored, so the write needs no fence; the next one stores the lease's.
        With ``creation.owner`` the write takes the pass's lease too; when another holds
        it, nothing is stored and the caller creates the instance the usual way."""
        creation = self.creation
        assert creation is not None
        self.creation = None
        core = self.core
        handle = self.handle
        owner = creation.owner
        if owner is None:
            await ensure_current(core.lock, handle, core.options.lease_seconds)
        created = instance if plain else creation.instance
        try:
            if owner is None:
                await core.persistence.create_workflow(created)
            else:
                asked = self.loop_time()
                request = LeaseRequest(owner, core.options.lease_seconds)
                lease = await core.persistence.create_workflow(created, lease=request)
                if lease is None:
                    creation.stored.set(ok=False)
                    raise _NotCreated(f"the lease of new workflow {instance.id} is held")
                handle.lease, handle.leased_at = lease, asked
        except _NotCreated:
            raise
        except Exception as exc:
            creation.stored.set(ok=False, error=exc)
            raise _NotCreated(str(exc)) from exc
        except BaseException:
            # Cancelled (the host is stopping) while the write was under way: it may or may
            # not be stored, so the caller must not create it again.
            creation.stored.set(
                ok=False,
                error=WfeError(
                    f"the host stopped while it stored new workflow {instance.id}: it may or "
                    "may not be stored (get_workflow tells; a stored one runs once a host "
                    "with workers runs)"
                ),
            )
            raise
        instance.revision = created.revision
        creation.stored.set(ok=True)
        if core.lifecycle.has_subscribers:
            await core.publish_lifecycle(
                lifecycle_event(instance, LifecycleEventType.WORKFLOW_STARTED)
            )
        await core.enqueue_index(instance.id)
        # The caller of start_workflow gets the id before the first step's body runs, as
        # when it created the instance itself (a body that blocks the loop would hold it).
        await anyio.lowlevel.checkpoint()

    async def stored_pointers(self, workflow_id: str, count: int) -> list[ExecutionPointer]:
        return await stored_pointers(self.core.persistence, workflow_id, count)

    async def publish(self, event: LifecycleEvent) -> None:
        await self.core.publish_lifecycle(event)

    def wants_lifecycle_events(self) -> bool:
        return self.core.lifecycle.has_subscribers

    def create_body(self, step: StepDefinition) -> StepBody:
        return self.core.create_body(step)


#: Every field of an instance, in the order of its class, in one C-level call.
_instance_state = operator.attrgetter(*(field.name for field in attrs.fields(WorkflowInstance)))
_INSTANCE_FIELDS = [field.name for field in attrs.fields(WorkflowInstance)]
# Given by position below: each field is its __init__'s argument of the same name.
assert all(field.init and field.alias == field.name for field in attrs.fields(WorkflowInstance))
_POINTERS_AT = _INSTANCE_FIELDS.index("pointers")
_DATA_AT = _INSTANCE_FIELDS.index("data")


def _working_copy(instance: WorkflowInstance, data: Any) -> WorkflowInstance:
    """``instance`` with ``data`` and a pointer list of its own (empty): what
    ``attrs.evolve(instance, pointers=[], data=data)`` gives, without its look at the
    class's fields on every call (a new instance's first pass starts from it)."""
    values = list(_instance_state(instance))
    values[_POINTERS_AT] = []
    values[_DATA_AT] = data
    return WorkflowInstance(*values)


class PassRunner:
    """Runs passes for a host and serializes outside changes with them.

    ``context`` is what steps get as ``ctx.host`` (start workflows, publish events, read
    workflows)."""

    def __init__(self, core: HostCore, context: HostContext) -> None:
        self.core = core
        self.context = context
        self.running: dict[str, PassHandle] = {}
        #: One slot per pass this host runs, however it started (here, from the queue, taken
        #: over from an event's delivery): ``concurrency`` bounds them all. Made anew each
        #: time the workers start (see :meth:`open`).
        self.slots = anyio.Semaphore(core.options.concurrency)
        #: New instances waiting here for a slot (see :meth:`start`).
        self.waiting = 0
        #: Instances an outside change (suspend, resume, terminate) is waiting to lock: no new
        #: pass of this host starts on them meanwhile, so the change is not starved.
        self.held: dict[str, int] = {}
        #: The host is stopping: running passes finish their steps and start none, and no
        #: new pass starts here (new work is queued for any worker).
        self.stopping = False
        #: Instances whose definition version this host lacks, reported (logged) once.
        self.undefined: set[str] = set()
        #: What was said about instances other workers' leases keep from running here.
        self.notices = BusyNotices(core.lock)
        #: Set once no pass runs, while :meth:`idle` waits for it.
        self._idle: anyio.Event | None = None
        #: anyio's clock, read directly in the event loop the workers run in (see open).
        self.clock: Callable[[], float] = anyio.current_time

    def open(self) -> None:
        """Called as the host's workers start (in the event loop they run in)."""
        self.slots = anyio.Semaphore(self.core.options.concurrency)
        self.stopping = False
        self.clock = loop_clock()

    def stop_all(self) -> int:
        """The host is stopping: let the running passes finish the steps they run and start
        no new ones, and start no new pass. The instances they leave unfinished are queued
        again as their passes end, for another worker (or the next start) to take at once.
        Returns how many passes run."""
        self.stopping = True
        for handle in self.running.values():
            handle.stop = True
            handle.rerun = True
        return len(self.running)

    async def idle(self) -> None:
        """Return once no pass runs."""
        if self.running:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _take_slot(self) -> bool:
        try:
            self.slots.acquire_nowait()
        except anyio.WouldBlock:
            return False
        return True

    def owner(self) -> str:
        """A lease owner name unique to one acquisition (leases are not re-entrant)."""
        # Eight random hex digits (as the first eight of new_id(), without the rest).
        return f"{self.core.worker_id}/{os.urandom(4).hex()}"

    async def process(self, workflow_id: str) -> float | None:
        """Queue handler of ``QueueName.WORKFLOW``: one pass over ``workflow_id``."""
        handle = self.running.get(workflow_id)
        if handle is not None:
            handle.rerun = True
            return None
        if workflow_id in self.held or self.stopping:
            return BUSY_RETRY
        core = self.core
        lease = await core.lock.acquire(
            workflow_id, owner=self.owner(), ttl=core.options.lease_seconds
        )
        if lease is None:
            await self.notices.busy(workflow_id, core.clock.now())
            return BUSY_RETRY
        if self.notices.noticed:
            self.notices.ran(workflow_id)
        handle = PassHandle(workflow_id)
        self.running[workflow_id] = handle
        await self._own(handle, lease, None)
        return None

    def start(self, instance: WorkflowInstance) -> bool:
        """Run the first pass over ``instance``, just created by this host, here (in the
        background) instead of through the queue, when this host runs workers and has a slot
        free now or within :data:`START_WAIT` seconds (holding the instance's lease while it
        waits, so no other worker starts it meanwhile). False when it does not run workers,
        or as many new instances already wait for a slot as there are slots: queue it. An
        instance that waited in vain is queued then. (Should the process die first, the
        instance is stored due now, and the scheduler's recovery sweep runs it.)"""
        handle = self.admit(instance.id)
        return handle is not None and self.launch(handle, instance)

    def admit(self, workflow_id: str) -> PassHandle | None:
        """Reserve the first pass of a new instance here, as :meth:`start` would run it (a
        slot, or a place among those waiting for one), before the instance is stored: so the
        write creating it can take its lease (``policy.leased_writes``), for :meth:`launch`
        to hand to the pass. ``None``: queue it. Undo with :meth:`withdraw`."""
        core = self.core
        if core.worker_group() is None or self.stopping or workflow_id in self.running:
            return None
        slot = self._take_slot()
        if not slot and self.waiting >= core.options.concurrency:
            return None
        handle = PassHandle(workflow_id, slot=slot)
        # Registered now, so what arrives for the instance meanwhile waits for this pass.
        self.running[workflow_id] = handle
        if not slot:
            self.waiting += 1
        return handle

    def withdraw(self, handle: PassHandle) -> None:
        """Give up what :meth:`admit` reserved (the pass will not run here)."""
        if not handle.slot:
            self.waiting -= 1
        self._forget(handle)

    def launch(
        self, handle: PassHandle, instance: WorkflowInstance, lease: Lease | None = None
    ) -> bool:
        """Start the pass :meth:`admit` reserved over ``instance``, now stored, holding
        ``lease`` when its create took it (else the pass takes it). False, the reservation
        given up, when the host stopped running workers meanwhile: queue it (and release
        ``lease``)."""
        core = self.core
        tg = core.worker_group()
        if tg is None or self.stopping:
            self.withdraw(handle)
            return False
        try:
            # The pass changes the instance, and the caller's data is the caller's: a copy of
            # the data as a read would give it (a new instance has nothing else mutable).
            data = json_copy(to_primitive(instance.data))
        except BaseException:
            self.withdraw(handle)
            raise
        working = core.restore(_working_copy(instance, data))
        tg.start_soon(self._start, handle, working, lease)
        return True

    def create(self, instance: WorkflowInstance) -> Creation | None:
        """Store ``instance``, new and not stored yet, with the first write of its first pass,
        run here (in the background) at once: when this host runs workers, has a slot free
        now and can copy the data. The caller waits for the returned creation's outcome
        before it tells anyone the id. ``None``: create it and start it as usual."""
        core = self.core
        tg = core.worker_group()
        if tg is None or instance.id in self.running:
            return None
        try:
            # The pass changes the instance; the caller's data is the caller's.
            data = json_copy(to_primitive(instance.data))
        except (TypeError, ValueError):
            return None  # the usual path says what the store makes of it
        if not self._take_slot():
            return None
        working = core.restore(_working_copy(instance, data))
        handle = PassHandle(instance.id, slot=True)
        # Registered now, so what arrives for the instance meanwhile waits for this pass.
        self.running[instance.id] = handle
        # With leased writes, the write creating the instance takes the lease too.
        owner = self.owner() if core.policy.leased_writes else None
        creation = Creation(instance, owner)
        tg.start_soon(self._create, handle, working, creation)
        return creation

    async def _create(
        self, handle: PassHandle, instance: WorkflowInstance, creation: Creation
    ) -> None:
        core = self.core
        if creation.owner is not None:
            await self._own(handle, None, instance, creation=creation)
            return
        try:
            # Nobody else knows the id yet: the lease is free unless the caller chose an id
            # that is taken (then the usual path refuses it).
            lease = await core.lock.acquire(
                instance.id, owner=self.owner(), ttl=core.options.lease_seconds
            )
        except Exception:
            logger.exception("could not lease new workflow %s", instance.id)
            lease = None
        except BaseException:
            self._forget(handle)
            creation.stored.set(ok=False)
            raise
        if lease is None:
            self._forget(handle)
            creation.stored.set(ok=False)
            return
        await self._own(handle, lease, instance, creation=creation)

    async def _start(
        self, handle: PassHandle, instance: WorkflowInstance, lease: Lease | None
    ) -> None:
        core = self.core
        waiting = not handle.slot
        try:
            if lease is None:
                lease = await core.lock.acquire(
                    instance.id, owner=self.owner(), ttl=core.options.lease_seconds
                )
            if lease is not None and waiting:
                # Renewed meanwhile like a running pass's (see renew_leases).
                handle.lease, handle.leased_at = lease, anyio.current_time()
                with anyio.move_on_after(START_WAIT):
                    await self.slots.acquire()
                    handle.slot = True
                lease = handle.lease
                if not handle.slot:  # busy here: let any worker have it
                    handle.lease = None
                    await self.release(lease)
                    lease = None
        except Exception:
            logger.exception("could not lease new workflow %s; queueing it", instance.id)
            lease = None
        except BaseException:
            # Stopping: it is stored due, the next start runs it.
            if handle.lease is not None:
                await self.release(handle.lease)
            self._forget(handle)
            raise
        finally:
            if waiting:
                self.waiting -= 1
        if lease is None:  # another worker got to it first, no slot came, or the lock failed
            self._forget(handle)
            await core.enqueue_workflow(instance.id)
            return
        await self._own(handle, lease, instance)

    def _forget(self, handle: PassHandle) -> None:
        """``handle``'s pass is over (or never ran): unregister it, free its slot, and let
        the waiters that relied on it look again."""
        del self.running[handle.workflow_id]
        if handle.slot:
            handle.slot = False
            self.slots.release()
        self.core.waiters.pass_ended(handle.workflow_id)
        if self._idle is not None and not self.running:
            self._idle.set()

    def hand_over(self, live: LivePart, lease: Lease, carried: Carried | None = None) -> bool:
        """Run a pass over ``live`` (an instance's live part, or the whole instance: see
        ``LivePart.of_whole``), loaded under ``lease``, in the background; the pass takes
        the lease over (and releases it) and stores ``carried`` (changes not stored yet)
        with its first write. Saves releasing the lease, queueing the instance, taking the
        lease again, reading the instance again, and a write. False when this host runs no
        workers, already runs a pass over it, or has no free slot: the caller keeps the
        lease."""
        instance = live.instance
        tg = self.core.worker_group()
        if (
            tg is None
            or self.stopping
            or instance.id in self.running
            or instance.id in self.held
            or not self._take_slot()
        ):
            return False
        handle = PassHandle(instance.id, slot=True)
        # Registered now, so what arrives for the instance meanwhile waits for this pass.
        self.running[instance.id] = handle
        tg.start_soon(partial(self._own, handle, lease, instance, carried, live=live))
        return True

    async def _own(
        self,
        handle: PassHandle,
        lease: Lease | None,
        instance: WorkflowInstance | None,
        carried: Carried | None = None,
        *,
        creation: Creation | None = None,
        live: LivePart | None = None,
    ) -> None:
        """Run a pass holding ``lease`` (registered in ``running``; ``None``: the write
        creating ``creation`` takes it), then release it unless the pass's last write gave
        it back, and do what the pass left to do."""
        core = self.core
        workflow_id = handle.workflow_id
        handle.lease = lease
        handle.leased_at = self.clock()
        if self.stopping:  # it waited for a slot while the host began to stop
            handle.stop = handle.rerun = True
        try:
            await self._leased_pass(handle, instance, carried, creation, live)
        except BaseException as exc:
            if contains(exc, _NotCreated):
                pass  # nothing stored; the caller of start_workflow gets the error
            elif contains(exc, StaleLeaseError):
                # A newer holder of the lease wrote the instance: it is theirs now (and this
                # lease gone, nothing to give back). Expected after a lost lease (a pause, a
                # partition), so no traceback.
                handle.lease = None
                logger.warning(
                    "lost the lease of a running pass (another worker wrote the instance "
                    "under a newer lease); abandoning it: %s",
                    _message(exc),
                    extra={"workflow_id": workflow_id},
                )
            elif contains(exc, LockNotHeldError):
                # Found before writing (ensure_current): nothing was written.
                logger.warning(
                    "lost the lease of a running pass; abandoning it: %s",
                    _message(exc),
                    extra={"workflow_id": workflow_id},
                )
                handle.rerun = True
            elif contains(exc, ConcurrencyError):
                # Another writer got there first: this pass's view is stale; run it again.
                logger.warning(
                    "stale pass dropped", extra={"workflow_id": workflow_id}, exc_info=True
                )
                handle.rerun = True
            else:
                raise
        finally:
            if carried is not None:
                carried.stored.set(ok=False)  # unless its first write stored them
            if creation is not None and not creation.stored.ok:
                creation.stored.set(ok=False)  # the pass ended before it stored anything
                handle.rerun = False  # there is nothing to run
            self._forget(handle)
            # The renewer sees the handle gone and leaves the lease alone from now on. None:
            # given back by the last write, found lost, or never taken.
            if handle.lease is not None:
                await self.release(handle.lease, wrote=handle.stored)
            if handle.stored:
                # The instance's due time changed: the scheduler may have been waiting for
                # this pass before it looks at the next due time.
                core.timers.pass_stored()
            for callback in handle.after:
                await callback()
            if handle.rerun:
                with anyio.CancelScope(shield=True):
                    await core.enqueue_workflow(workflow_id)

    async def _leased_pass(
        self,
        handle: PassHandle,
        instance: WorkflowInstance | None,
        carried: Carried | None,
        creation: Creation | None,
        live: LivePart | None = None,
    ) -> None:
        with handle.scope:
            environment = await self._run(
                handle.workflow_id, handle, instance, carried, creation, live
            )
            if environment is not None and environment.stored:
                due = environment.stored_due
                if due is not None and due <= self.core.clock.now():
                    # It fell due while the pass stored its state (a short sleep on a slow
                    # store): nothing else would wake it, so run it again.
                    handle.rerun = True

    async def _run(
        self,
        workflow_id: str,
        handle: PassHandle,
        instance: WorkflowInstance | None = None,
        carried: Carried | None = None,
        creation: Creation | None = None,
        live: LivePart | None = None,
    ) -> _PassEnvironment | None:
        """Run a pass (over ``instance`` when the caller just loaded it under the lease, as
        ``live`` when it read its live part, with the ``carried`` changes to store); returns
        its environment (what it stored), ``None`` when none ran."""
        core = self.core
        if instance is None:
            # Its live part: a pass costs the same at round 10,000 of a loop as at round 10.
            try:
                live = await core.load_live(workflow_id)
            except WorkflowNotFoundError:
                return None
            instance = live.instance
        if instance.status.is_finished:
            return None
        due = instance.next_execution
        if due is None:
            return await self._observed_pass(instance, handle, carried, creation, live)
        # How long an instance stays due while it is handled as usual (queued, then run):
        # the scheduler leaves what is due for less than that to whoever queued it (a
        # shared store's recovery look).
        timers = core.timers
        timers.pass_started(workflow_id, due, core.clock.now())
        try:
            return await self._observed_pass(instance, handle, carried, creation, live)
        finally:
            timers.pass_ended(workflow_id, core.clock.now())

    async def _observed_pass(
        self,
        instance: WorkflowInstance,
        handle: PassHandle,
        carried: Carried | None,
        creation: Creation | None,
        live: LivePart | None,
    ) -> _PassEnvironment:
        """Run a pass over ``instance``, in a telemetry span when telemetry is on."""
        telemetry = self.core.telemetry
        if telemetry is None:
            return await self._pass(instance, handle, carried, creation, live)
        with telemetry.workflow_pass(instance):
            return await self._pass(instance, handle, carried, creation, live)

    async def _pass(
        self,
        instance: WorkflowInstance,
        handle: PassHandle,
        carried: Carried | None,
        creation: Creation | None,
        live: LivePart | None,
    ) -> _PassEnvironment:
        """Run a pass over ``instance``, loaded under ``handle``'s lease (as ``live``, when it
        was read as a live part)."""
        core = self.core
        environment = _PassEnvironment(core, self.context, instance, handle, carried, creation)
        definition = core.definitions.find(instance.definition_id, instance.version)
        partial_live = live is not None and not live.whole
        if definition is None:
            if partial_live and carried is not None:
                # Changes made to the live part (an event's delivery) are stored below as
                # they are; the next pass, over the stored instance, reports it.
                handle.rerun = True
            else:
                if partial_live:
                    # Its write below is the host's, of the whole instance (nothing ran).
                    instance = await core.load(instance.id)
                await self._report_undefined(environment, instance)
        else:
            executor = WorkflowExecutor(
                environment,
                max_parallel_steps=core.options.max_parallel_steps,
                step_middleware=tuple(core.step_middleware),
                clock=core.clock,
            )
            unfit = restore_error(instance.data, definition)
            if unfit is not None:
                # Stored data the data type cannot hold (the type changed under a running
                # workflow): no pass could ever run, so fail it once, saying why, rather
                # than retry for ever. The stored data stays as it was.
                await executor.fail_workflow(
                    instance,
                    definition,
                    f"its stored data does not fit {definition.data_type.__qualname__}: {unfit}",
                    error_type=f"{type(unfit).__module__}.{type(unfit).__qualname__}",
                    live=live,
                )
            else:
                await executor.run_pass(
                    instance, definition, should_stop=lambda: handle.stop, live=live
                )
        if environment.carried is not None or environment.creation is not None:
            # The pass wrote nothing (it had nothing to run, or no definition): the carried
            # changes, or the new instance, still must be stored (a live part's by position).
            await environment.persist(
                instance,
                subscriptions=(),
                errors=(),
                closed_subscriptions=(),
                changed_pointers=(),
                last=True,
                pointer_write=(
                    PointerWrite(live.stored_pointers, children_start=live.children_start)
                    if live is not None and partial_live
                    else None
                ),
            )
        return environment

    async def _report_undefined(
        self, environment: _PassEnvironment, instance: WorkflowInstance
    ) -> None:
        """``instance`` needs a definition version this host does not have. Another worker
        may have it, so the instance is left as it is (runnable, due); but it is recorded on
        the instance, once (an error whose message starts with :func:`undefined_prefix`), so
        that ``wfe workflows show`` says why it does not move and ``wfe workflows list
        --stuck`` finds it; and this host logs it once."""
        core = self.core
        workflow_id = instance.id
        if workflow_id in self.undefined:
            return
        if len(self.undefined) >= MAX_REMEMBERED:
            self.undefined.clear()
        self.undefined.add(workflow_id)
        prefix = undefined_prefix(instance)
        message = (
            f"{prefix} on worker {core.worker_id} (registered there: "
            f"{_versions(core, instance.definition_id)}); it waits for a worker that has it"
        )
        logger.error("workflow %s: %s", workflow_id, message, extra={"workflow_id": workflow_id})
        recorded = await core.persistence.get_errors(workflow_id)
        if any(error.message.startswith(prefix) for error in recorded):
            return  # recorded by this host earlier, or by another worker
        error = ExecutionError(
            workflow_id=workflow_id,
            pointer_id=None,
            message=message,
            error_type="wfe_core.errors.DefinitionNotFoundError",
            time=core.clock.now(),
        )
        await environment.persist(
            instance,
            subscriptions=(),
            errors=(error,),
            closed_subscriptions=(),
            changed_pointers=(),
            last=True,
        )
        # Still due, and nothing here can run it: no pass again at once (the scheduler's
        # recovery looks again, and a worker that has the definition takes it).
        environment.stored_due = None

    async def renew_leases(self) -> None:
        """Run while the workers do: keep the leases of the running passes alive (see
        :mod:`wfe_host.runtime.leases`)."""
        core = self.core
        renewer = LeaseRenewer(
            core.lock,
            core.options.lease_seconds,
            self.running.values,
            self._lease_lost,
            renewals=core.telemetry,
        )
        await renewer.run()

    def _lease_lost(self, handle: PassHandle) -> None:
        if self.running.get(handle.workflow_id) is handle:
            logger.warning(
                "lost the lease of a running pass; abandoning it",
                extra={"workflow_id": handle.workflow_id},
            )
            handle.rerun = True
            handle.scope.cancel()

    async def release(self, lease: Lease, *, wrote: bool = False) -> None:
        """Release ``lease`` (shielded from cancellation). A lease already gone is fine,
        but one a pass ``wrote`` under is worth a warning: it lapsed while the pass ran
        (the writes were fenced, so a newer holder's work was never overwritten)."""
        with anyio.CancelScope(shield=True):
            try:
                await self.core.lock.release(lease)
            except LockNotHeldError:
                if wrote:
                    logger.warning(
                        "the lease of a pass lapsed before the pass gave it back (was the "
                        "event loop blocked?); another worker may have run the instance since",
                        extra={"workflow_id": lease.key},
                    )
                else:
                    logger.debug("lease already gone", extra={"workflow_id": lease.key})
            except WfeError:
                logger.debug("lease already gone", extra={"workflow_id": lease.key})

    async def with_lease(
        self,
        workflow_id: str,
        change: Callable[[WorkflowInstance, int], Awaitable[Any]],
        *,
        cancel_running: bool = False,
    ) -> Any:
        """Run ``change`` on the loaded instance while holding its lease, after stopping (or,
        with ``cancel_running``, cancelling) a pass of this host that is running it.
        ``change`` gets the lease's fencing token, to write under."""
        core = self.core
        handle = self.running.get(workflow_id)
        if handle is not None:
            handle.stop = True
            if cancel_running:
                handle.scope.cancel()
        wait = max(core.options.lease_seconds * 2, 10.0)
        self.held[workflow_id] = self.held.get(workflow_id, 0) + 1
        try:
            lease = await core.lock.acquire(
                workflow_id, owner=self.owner(), ttl=core.options.lease_seconds, wait=wait
            )
            if lease is None:
                raise WfeError(f"workflow {workflow_id} stayed busy for {wait:.0f} s; try again")
            try:
                instance = await core.load(workflow_id)
                return await change(instance, lease.token)
            finally:
                await self.release(lease)
        finally:
            self.held[workflow_id] -= 1
            if not self.held[workflow_id]:
                del self.held[workflow_id]
