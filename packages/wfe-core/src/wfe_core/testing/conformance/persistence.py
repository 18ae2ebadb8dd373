"""The conformance suite of :class:`~wfe_core.providers.PersistenceProvider`."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from wfe_core.errors import (
    ConcurrencyError,
    EventNotFoundError,
    LockNotHeldError,
    StaleLeaseError,
    SubscriptionNotFoundError,
    WfeError,
    WorkflowNotFoundError,
)
from wfe_core.memory import MemoryLock
from wfe_core.models import (
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    PointerStatus,
    TraceContext,
    WorkflowInstance,
    WorkflowStatus,
    new_id,
)
from wfe_core.providers import LeaseRequest, PointerWrite
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance import strategies
from wfe_core.testing.conformance._support import (
    MACHINE_SETTINGS,
    as_held,
    as_stored,
    call,
    now_ms,
    require,
)
from wfe_core.testing.conformance.reference import ReferencePersistence

if TYPE_CHECKING:
    from wfe_core.providers import Lease, LockProvider, PersistenceProvider

__all__ = ["PersistenceSuite", "persistence_state_machine"]

#: Settings of the property tests: a few dozen examples, no deadline on a noisy machine.
PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=list(HealthCheck)
)


@attrs.define
class Order:
    """Workflow data of an attrs class: the provider gives it back as a plain dict."""

    items: list[str] = attrs.Factory(list)
    total: int = 0
    placed: datetime | None = None
    notes: dict[str, Any] = attrs.Factory(dict)


#: A W3C traceparent (the example of the Trace Context specification).
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def make_instance(**fields: Any) -> WorkflowInstance:
    """An instance with millisecond-precision times and some data; ``fields`` override."""
    values: dict[str, Any] = {
        "definition_id": "wfe-test",
        "version": 1,
        "create_time": now_ms(),
        "data": {"count": 1, "nested": {"list": [1, 2.5, "três", None, True]}},
    }
    values.update(fields)
    return WorkflowInstance(**values)


def make_subscription(workflow_id: str, **fields: Any) -> EventSubscription:
    """A subscription of ``workflow_id`` to ``approval``/``42``; ``fields`` override."""
    values: dict[str, Any] = {
        "workflow_id": workflow_id,
        "pointer_id": new_id(),
        "step_id": 1,
        "event_name": "approval",
        "event_key": "42",
        "subscribe_as_of": now_ms(),
        "create_time": now_ms(),
    }
    values.update(fields)
    return EventSubscription(**values)


def make_error(workflow_id: str, **fields: Any) -> ExecutionError:
    """A recorded failure of ``workflow_id``; ``fields`` override."""
    values: dict[str, Any] = {
        "workflow_id": workflow_id,
        "pointer_id": new_id(),
        "message": "boom",
        "step_id": 1,
        "step_name": "Charge",
        "error_type": "RuntimeError",
        "traceback": "Traceback ...",
        "time": now_ms(),
    }
    values.update(fields)
    return ExecutionError(**values)


def _ids(items: Any) -> list[str]:
    return [item.id for item in items]


class PersistenceSuite:
    """Contract tests every :class:`~wfe_core.providers.PersistenceProvider` must pass.

    Subclass it in a test module, set ``__test__ = True`` and supply an async ``persistence``
    fixture that yields an entered provider over an empty store (fresh per test)::

        class TestMyPersistence(PersistenceSuite):
            __test__ = True

            @pytest.fixture
            async def persistence(self):
                async with MyPersistence(...) as provider:
                    yield provider
    """

    __test__ = False

    # -- instances: round trip -------------------------------------------------------------
    @pytest.mark.anyio
    async def test_create_sets_revision_one_and_round_trips(
        self, persistence: PersistenceProvider
    ) -> None:
        started = now_ms()
        instance = make_instance(
            data=Order(
                items=["ä", "🚀"],
                total=3,
                placed=started,
                notes={"deep": {"deeper": [1, {"x": None}]}, "flag": False},
            ),
            reference="order-ü-1",
            description="A test order — with unicode",
            next_execution=started,
            trace_context=TraceContext(
                (("traceparent", _TRACEPARENT), ("tracestate", "vendor=ü,other=1"))
            ),
            pointers=[
                ExecutionPointer(
                    step_id=0,
                    step_name="Validate",
                    status=PointerStatus.COMPLETE,
                    start_time=started,
                    end_time=started + timedelta(milliseconds=5),
                    outcome={"ok": True},
                    children=[new_id()],
                    extensions={"k": [1, "v"]},
                ),
                ExecutionPointer(
                    step_id=1,
                    status=PointerStatus.WAITING_FOR_EVENT,
                    event_name="approval",
                    event_key="42",
                    event_effective_date=started,
                    persistence_data={"state": [1, 2]},
                    scope=[new_id(), new_id()],
                    attempt=2,
                ),
            ],
        )
        await persistence.create_workflow(instance)
        assert instance.revision == 1
        got = await persistence.get_workflow(instance.id)
        assert got == as_stored(instance)
        assert got.revision == 1
        assert got.data == {
            "items": ["ä", "🚀"],
            "total": 3,
            "placed": started.isoformat(),
            "notes": {"deep": {"deeper": [1, {"x": None}]}, "flag": False},
        }
        for moment in (got.create_time, got.next_execution, got.pointers[0].start_time):
            assert moment is not None
            assert moment.utcoffset() == timedelta(0)

    @pytest.mark.anyio
    async def test_a_new_trace_context_is_stored_by_a_write_of_nothing_else(
        self, persistence: PersistenceProvider
    ) -> None:
        """The host sets the context on an instance that had none (its first pass), and the
        pass's first write may change nothing else: a store that skips an unchanged head
        must see it changed."""
        instance = make_instance(pointers=[ExecutionPointer(step_id=0)])
        await persistence.create_workflow(instance)
        await persistence.persist_workflow(instance, changed_pointers=())
        assert (await persistence.get_workflow(instance.id)).trace_context is None
        context = TraceContext((("traceparent", _TRACEPARENT),))
        instance.trace_context = context
        await persistence.persist_workflow(instance, changed_pointers=())
        got = await persistence.get_workflow(instance.id)
        assert got.trace_context == context
        assert got.trace_context is not None
        assert got.trace_context.traceparent == _TRACEPARENT
        instance.trace_context = None
        await persistence.persist_workflow(instance, changed_pointers=())
        assert (await persistence.get_workflow(instance.id)).trace_context is None

    @pytest.mark.anyio
    async def test_create_of_an_existing_id_is_refused(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        with pytest.raises(WfeError):
            await persistence.create_workflow(make_instance(id=instance.id))

    @pytest.mark.anyio
    async def test_get_unknown_workflow(self, persistence: PersistenceProvider) -> None:
        with pytest.raises(WorkflowNotFoundError):
            await persistence.get_workflow(new_id())

    @pytest.mark.anyio
    async def test_get_workflows_leaves_out_unknown_ids(
        self, persistence: PersistenceProvider
    ) -> None:
        first, second = make_instance(), make_instance()
        await persistence.create_workflow(first)
        await persistence.create_workflow(second)
        got = await persistence.get_workflows([first.id, new_id(), second.id])
        assert sorted(_ids(got)) == sorted([first.id, second.id])
        assert {item.id: item for item in got}[first.id] == as_stored(first)
        assert list(await persistence.get_workflows([])) == []

    # -- instances: isolation --------------------------------------------------------------
    @pytest.mark.anyio
    async def test_changing_the_passed_instance_changes_nothing_stored(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance(pointers=[ExecutionPointer(step_id=0)])
        await persistence.create_workflow(instance)
        expected = as_stored(instance)
        instance.data["nested"]["list"].append("more")
        instance.data["count"] = 99
        instance.pointers[0].children.append(new_id())
        instance.pointers.append(ExecutionPointer(step_id=1))
        instance.status = WorkflowStatus.SUSPENDED
        assert await persistence.get_workflow(instance.id) == expected

    @pytest.mark.anyio
    async def test_changing_a_returned_instance_changes_nothing_stored(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance(pointers=[ExecutionPointer(step_id=0)])
        await persistence.create_workflow(instance)
        expected = as_stored(instance)
        got = await persistence.get_workflow(instance.id)
        got.data["nested"]["list"].clear()
        got.pointers[0].status = PointerStatus.FAILED
        got.pointers[0].scope.append("x")
        (listed,) = (await persistence.list_workflows()).items
        listed.data["count"] = 7
        assert await persistence.get_workflow(instance.id) == expected

    # -- instances: optimistic writes ------------------------------------------------------
    @pytest.mark.anyio
    async def test_persist_bumps_the_revision_and_stores(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance(pointers=[ExecutionPointer(step_id=0)])
        await persistence.create_workflow(instance)
        loaded = await persistence.get_workflow(instance.id)
        loaded.data["count"] = 2
        loaded.pointers[0].status = PointerStatus.COMPLETE
        loaded.pointers.append(ExecutionPointer(step_id=1, sleep_until=now_ms()))
        loaded.next_execution = now_ms()
        loaded.status = WorkflowStatus.SUSPENDED
        await persistence.persist_workflow(loaded)
        assert loaded.revision == 2
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)
        loaded.status = WorkflowStatus.COMPLETE
        loaded.complete_time = now_ms()
        await persistence.persist_workflow(loaded)
        assert loaded.revision == 3
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)

    @pytest.mark.anyio
    async def test_persist_with_changed_pointers_stores_them(
        self, persistence: PersistenceProvider
    ) -> None:
        """The executor's writes name the pointers they changed; the listed changes, new
        pointers and the instance's own fields are all stored."""
        first, second = ExecutionPointer(step_id=0), ExecutionPointer(step_id=1)
        instance = make_instance(pointers=[first, second])
        await persistence.create_workflow(instance)
        loaded = await persistence.get_workflow(instance.id)
        loaded.pointers[1].status = PointerStatus.RUNNING
        loaded.pointers[1].extensions["note"] = "listed"
        added = ExecutionPointer(step_id=2, scope=[second.id])
        loaded.pointers[1].children.append(added.id)
        loaded.pointers.append(added)
        loaded.data["count"] = 3
        await persistence.persist_workflow(loaded, changed_pointers={second.id, added.id})
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)
        # Then a write listing nothing but the instance's fields, and one listing every pointer.
        loaded.next_execution = now_ms()
        await persistence.persist_workflow(loaded, changed_pointers=())
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)
        for pointer in loaded.pointers:
            pointer.status = PointerStatus.COMPLETE
            pointer.active = False
        await persistence.persist_workflow(loaded, changed_pointers=[p.id for p in loaded.pointers])
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)

    @pytest.mark.anyio
    async def test_write_contract_a_loop_written_step_by_step(
        self, persistence: PersistenceProvider
    ) -> None:
        """The write contract, as the executor writes a loop: each write names the container
        (whose ``children`` grew by one), the branch that finished and the one started, and
        leaves out every other pointer. Whatever a provider skips, the instance reads back
        whole after every write: the head, the named pointers, the new ones (named or not)
        and the child ids appended."""
        loop = ExecutionPointer(step_id=0, status=PointerStatus.RUNNING)
        instance = make_instance(pointers=[loop], data={"i": 0})
        await persistence.create_workflow(instance)
        loaded = await persistence.get_workflow(instance.id)
        for round_no in range(1, 41):
            container = loaded.pointers[0]
            previous = loaded.pointers[-1] if len(loaded.pointers) > 1 else None
            changed = {container.id}
            if previous is not None:
                previous.status = PointerStatus.COMPLETE
                previous.active = False
                previous.end_time = now_ms()
                previous.outcome = {"round": round_no - 1}
                changed.add(previous.id)
            branch = ExecutionPointer(
                step_id=1, scope=[container.id], context_item=round_no, attempt=1
            )
            loaded.pointers.append(branch)
            container.children.append(branch.id)
            container.persistence_data = {"rounds": round_no}
            loaded.data["i"] = round_no
            if round_no % 3:
                changed.add(branch.id)  # new pointers may be named or not
            await persistence.persist_workflow(loaded, changed_pointers=changed)
            assert loaded.revision == round_no + 1
            if round_no % 10 == 0:
                assert await persistence.get_workflow(instance.id) == as_stored(loaded)
                # A fresh copy read back writes on from the stored revision.
                loaded = await persistence.get_workflow(instance.id)
        stored = await persistence.get_workflow(instance.id)
        assert stored == as_stored(loaded)
        assert len(stored.pointers) == 41
        assert stored.pointers[0].children == [p.id for p in stored.pointers[1:]]

    @pytest.mark.anyio
    async def test_write_contract_without_changed_pointers_stores_everything(
        self, persistence: PersistenceProvider
    ) -> None:
        """``changed_pointers=None``: any pointer may have changed, been added or removed;
        after the write the stored pointers are exactly the instance's."""
        pointers = [ExecutionPointer(step_id=i, children=[new_id()]) for i in range(4)]
        instance = make_instance(pointers=pointers)
        await persistence.create_workflow(instance)
        loaded = await persistence.get_workflow(instance.id)
        # An executor write first, so a provider keeping track of its rows has some.
        loaded.pointers[3].attempt = 1
        await persistence.persist_workflow(loaded, changed_pointers=[loaded.pointers[3].id])
        loaded.pointers[0].extensions["edited"] = True
        loaded.pointers[1].children = ["replaced"]
        loaded.pointers[2].children.clear()
        del loaded.pointers[3]
        await persistence.persist_workflow(loaded)
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)
        # And a changed pointer named again after that is stored from there on.
        loaded.pointers[1].children.append("appended")
        await persistence.persist_workflow(loaded, changed_pointers=[loaded.pointers[1].id])
        assert await persistence.get_workflow(instance.id) == as_stored(loaded)

    @pytest.mark.anyio
    async def test_write_contract_from_a_copy_written_elsewhere(
        self, persistence: PersistenceProvider
    ) -> None:
        """A write naming its changes, from a copy read after another writer's write, stores
        that writer's changes too (they are in the copy, not named: the provider cannot take
        what it stored itself as the base)."""
        instance = make_instance(pointers=[ExecutionPointer(step_id=0), ExecutionPointer(1)])
        await persistence.create_workflow(instance)
        mine = await persistence.get_workflow(instance.id)
        mine.pointers[0].attempt = 1
        await persistence.persist_workflow(mine, changed_pointers=[mine.pointers[0].id])
        theirs = await persistence.get_workflow(instance.id)
        theirs.pointers[1].extensions["theirs"] = 1
        theirs.pointers[1].children.append(new_id())
        await persistence.persist_workflow(theirs)
        copy = await persistence.get_workflow(instance.id)
        copy.pointers[0].attempt = 2
        await persistence.persist_workflow(copy, changed_pointers=[copy.pointers[0].id])
        stored = await persistence.get_workflow(instance.id)
        assert stored == as_stored(copy)
        assert stored.pointers[1].extensions == {"theirs": 1}

    @pytest.mark.anyio
    async def test_live_part_holds_the_head_and_the_active_pointers(
        self, persistence: PersistenceProvider
    ) -> None:
        """``get_live_part``: the whole head, and some of the stored pointers in their
        stored order, every active one among them, each whole (of its ``children``, maybe
        the last ids only: ``children_start``), with its stored position and the stored
        pointer count (or the whole instance, ``whole``)."""
        pointers = [
            ExecutionPointer(
                step_id=i, active=i % 3 == 0, children=[new_id() for _ in range(i % 4)]
            )
            for i in range(12)
        ]
        instance = make_instance(pointers=pointers)
        await persistence.create_workflow(instance)
        loaded = await persistence.get_workflow(instance.id)
        loaded.pointers[3].active = False
        loaded.pointers[4].active = True
        loaded.pointers.append(ExecutionPointer(step_id=12, children=[new_id()]))
        changed = [loaded.pointers[3].id, loaded.pointers[4].id]
        await persistence.persist_workflow(loaded, changed_pointers=changed)
        whole = await persistence.get_workflow(instance.id)
        live = await persistence.get_live_part(instance.id)
        assert attrs.evolve(live.instance, pointers=[]) == attrs.evolve(whole, pointers=[])
        assert live.stored_pointers == len(whole.pointers) == 13
        if live.whole:
            assert live.instance.pointers == whole.pointers
            assert live.children_start == {}
        else:
            assert {p.id for p in live.instance.pointers} == set(live.positions)
            for pointer in live.instance.pointers:
                stored = whole.pointers[live.positions[pointer.id]]
                assert as_held(stored, live.children_start.get(pointer.id, 0)) == pointer
            positions = [live.positions[p.id] for p in live.instance.pointers]
            assert positions == sorted(positions)
            assert set(live.children_start) <= set(live.positions)
        listed = {p.id for p in live.instance.pointers}
        assert {p.id for p in whole.pointers if p.active} <= listed
        with pytest.raises(WorkflowNotFoundError):
            await persistence.get_live_part(new_id())

    @pytest.mark.anyio
    async def test_live_part_of_a_container_with_many_children(
        self, persistence: PersistenceProvider
    ) -> None:
        """A loop's container, active for the whole workflow, gets a child per round: its
        live part may hold only its last child ids (``children_start``: how many were left
        out), never fewer than the last one. A write of it names the start
        (``PointerWrite.children_start``) and appends ids; the stored list stays whole, in
        order, round after round. A list that lost stored ids past the start is refused."""
        branches = [ExecutionPointer(step_id=1, id=f"k{i}", active=False) for i in range(60)]
        loop = ExecutionPointer(step_id=0, children=[b.id for b in branches])
        instance = make_instance(pointers=[loop, *branches])
        await persistence.create_workflow(instance)
        # An executor write first, so a provider keeping track of its rows has some.
        loaded = await persistence.get_workflow(instance.id)
        loaded.pointers[0].attempt = 1
        await persistence.persist_workflow(loaded, changed_pointers=[loop.id])
        expected = [b.id for b in branches]
        for round_no in range(3):
            live = await persistence.get_live_part(instance.id)
            container = live.instance.pointers[0]
            assert container.id == loop.id
            start = 0 if live.whole else live.children_start.get(loop.id, 0)
            assert expected[start:] == container.children
            assert container.children[-1] == expected[-1]
            new = [ExecutionPointer(step_id=1, id=f"r{round_no}-{i}") for i in range(2)]
            container.children.extend(p.id for p in new)
            container.attempt += 1
            live.instance.pointers.extend(new)
            expected.extend(p.id for p in new)
            if live.whole:
                await persistence.persist_workflow(
                    live.instance, changed_pointers=[loop.id, *(p.id for p in new)]
                )
            else:
                write = PointerWrite(
                    live.stored_pointers,
                    [(live.positions[loop.id], container)],
                    new,
                    dict(live.children_start),
                )
                await persistence.persist_workflow(live.instance, pointer_write=write)
            stored = await persistence.get_workflow(instance.id)
            assert stored.pointers[0].children == expected
            assert stored.pointers[0].attempt == round_no + 2
            assert [p.id for p in stored.pointers[61:]] == expected[60:]
        live = await persistence.get_live_part(instance.id)
        start = 0 if live.whole else live.children_start.get(loop.id, 0)
        if start:
            # Lost the stored ids past the start: the caller's error, nothing stored.
            container = live.instance.pointers[0]
            container.children = []
            container.attempt = 99
            write = PointerWrite(
                live.stored_pointers,
                [(live.positions[loop.id], container)],
                (),
                {loop.id: start},
            )
            revision = live.instance.revision
            with pytest.raises(ValueError, match="children"):
                await persistence.persist_workflow(live.instance, pointer_write=write)
            stored = await persistence.get_workflow(instance.id)
            assert stored.revision == revision
            assert stored.pointers[0].children == expected
            assert stored.pointers[0].attempt == 4

    @pytest.mark.anyio
    async def test_write_contract_a_loop_written_from_live_parts(
        self, persistence: PersistenceProvider
    ) -> None:
        """A loop as passes over live parts write it: each round reads the live part, ends
        the last branch, starts a new one under the container and writes by position
        (``pointer_write``; as ever when the part is whole). The stored instance is after
        every round what the same changes to the whole instance make it."""
        loop = ExecutionPointer(step_id=0, status=PointerStatus.RUNNING)
        instance = make_instance(pointers=[loop], data={"i": 0})
        await persistence.create_workflow(instance)
        model = await persistence.get_workflow(instance.id)
        for round_no in range(1, 26):
            live = await persistence.get_live_part(instance.id)
            part = live.instance
            changed: list[ExecutionPointer] = []
            for pointers in (part.pointers, model.pointers):
                container = pointers[0]
                if len(pointers) > 1 and pointers[-1].active:
                    previous = pointers[-1]
                    previous.status = PointerStatus.COMPLETE
                    previous.active = False
                    previous.end_time = model.create_time + timedelta(seconds=round_no)
                    if pointers is part.pointers:
                        changed.append(previous)
                branch = ExecutionPointer(
                    step_id=1, id=f"b{round_no}", scope=[container.id], context_item=round_no
                )
                pointers.append(branch)
                container.children.append(branch.id)
                container.persistence_data = {"rounds": round_no}
            part.data["i"] = model.data["i"] = round_no
            container = part.pointers[0]
            ids = {container.id, *(p.id for p in changed), f"b{round_no}"}
            if live.whole:
                await persistence.persist_workflow(part, changed_pointers=ids)
            else:
                write = PointerWrite(
                    live.stored_pointers,
                    [(live.positions[p.id], p) for p in (container, *changed)],
                    [part.pointers[-1]],
                    live.children_start,
                )
                await persistence.persist_workflow(part, changed_pointers=ids, pointer_write=write)
            model.revision = part.revision
            assert await persistence.get_workflow(instance.id) == as_stored(model)
        stored = await persistence.get_workflow(instance.id)
        assert stored.pointers[0].children == [f"b{i}" for i in range(1, 26)]
        live = await persistence.get_live_part(instance.id)
        assert [p.id for p in live.instance.pointers if p.active] == [loop.id, "b25"]

    @pytest.mark.anyio
    async def test_pointers_read_page_by_page(self, persistence: PersistenceProvider) -> None:
        pointers = [
            ExecutionPointer(step_id=i, children=[new_id()] if i % 4 == 0 else [])
            for i in range(23)
        ]
        instance = make_instance(pointers=pointers)
        await persistence.create_workflow(instance)
        loaded = await persistence.get_workflow(instance.id)
        loaded.pointers[5].status = PointerStatus.COMPLETE
        loaded.pointers.append(ExecutionPointer(step_id=99))
        await persistence.persist_workflow(loaded, changed_pointers=[loaded.pointers[5].id])
        whole = (await persistence.get_workflow(instance.id)).pointers
        pages: list[ExecutionPointer] = []
        for skip in range(0, 30, 10):
            page = await persistence.get_pointers(instance.id, skip=skip, take=10)
            assert (page.total, page.skip, page.take) == (24, skip, 10)
            pages.extend(page.items)
        assert pages == whole
        assert (await persistence.get_pointers(instance.id, skip=40)).items == []
        assert (await persistence.get_pointers(instance.id, skip=3, take=0)).items == []
        first = await persistence.get_pointers(instance.id)
        assert first.items == whole[:100]
        with pytest.raises(WorkflowNotFoundError):
            await persistence.get_pointers(new_id())

    @pytest.mark.anyio
    async def test_stale_write_is_refused_and_stores_nothing(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        winner = await persistence.get_workflow(instance.id)
        loser = await persistence.get_workflow(instance.id)
        winner.data["count"] = 2
        await persistence.persist_workflow(winner)

        loser.data["count"] = 3
        loser.status = WorkflowStatus.TERMINATED
        subscription = make_subscription(instance.id)
        error = make_error(instance.id)
        with pytest.raises(ConcurrencyError):
            await persistence.persist_workflow(loser, subscriptions=[subscription], errors=[error])
        assert loser.revision == 1
        assert await persistence.get_workflow(instance.id) == as_stored(winner)
        with pytest.raises(SubscriptionNotFoundError):
            await persistence.get_subscription(subscription.id)
        later = subscription.subscribe_as_of + timedelta(seconds=1)
        assert list(await persistence.get_subscriptions("approval", "42", later)) == []
        assert list(await persistence.get_errors(instance.id)) == []
        # The original creator's revision is stale as well.
        with pytest.raises(ConcurrencyError):
            await persistence.persist_workflow(instance)

    # -- instances: fencing (providers with the ``fencing`` capability) ----------------------
    @pytest.mark.anyio
    async def test_fencing_an_older_fence_is_refused_and_stores_nothing(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.FENCING)
        instance = make_instance()
        await persistence.create_workflow(instance)
        await persistence.persist_workflow(instance, fence=7)
        stored = await persistence.get_workflow(instance.id)

        # The write of an older holder, at the current revision (the newer holder's copy).
        stale = await persistence.get_workflow(instance.id)
        stale.data["count"] = 99
        stale.status = WorkflowStatus.TERMINATED
        subscription = make_subscription(instance.id)
        error = make_error(instance.id)
        event = Event("wfe.workflow-finished", instance.id, time=now_ms())
        with pytest.raises(StaleLeaseError):
            await persistence.persist_workflow(
                stale, subscriptions=[subscription], errors=[error], events=[event], fence=6
            )
        assert stale.revision == stored.revision == 2
        assert await persistence.get_workflow(instance.id) == stored
        with pytest.raises(SubscriptionNotFoundError):
            await persistence.get_subscription(subscription.id)
        later = now_ms() + timedelta(seconds=1)
        assert list(await persistence.get_subscriptions("approval", "42", later)) == []
        assert list(await persistence.get_errors(instance.id)) == []
        with pytest.raises(EventNotFoundError):
            await persistence.get_event(event.id)
        assert list(await persistence.get_runnable_events(later)) == []
        # The refused write left the revision where it was: the current holder writes on.
        current = await persistence.get_workflow(instance.id)
        await persistence.persist_workflow(current, fence=7)
        assert current.revision == 3

    @pytest.mark.anyio
    async def test_fencing_equal_and_newer_fences_are_accepted(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.FENCING)
        instance = make_instance()
        await persistence.create_workflow(instance)
        await persistence.persist_workflow(instance, fence=3)
        # The same holder writes again (a pass writes after every step).
        instance.data["count"] = 2
        await persistence.persist_workflow(instance, fence=3)
        # A newer holder takes over; it need not be the next token (tokens may skip).
        instance.data["count"] = 3
        await persistence.persist_workflow(instance, fence=10)
        assert instance.revision == 4
        stored = await persistence.get_workflow(instance.id)
        assert (stored.revision, stored.data["count"]) == (4, 3)
        # The newer one is now the highest: the older holder is refused.
        with pytest.raises(StaleLeaseError):
            await persistence.persist_workflow(stored, fence=3)
        assert stored.revision == 4
        await persistence.persist_workflow(stored, fence=10)
        assert stored.revision == 5

    @pytest.mark.anyio
    async def test_fencing_writes_without_a_fence_are_not_checked(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.FENCING)
        instance = make_instance()
        await persistence.create_workflow(instance)
        # Before any fence, and after one: a write not made under a lease passes.
        await persistence.persist_workflow(instance)
        await persistence.persist_workflow(instance, fence=5)
        instance.status = WorkflowStatus.SUSPENDED
        await persistence.persist_workflow(instance)
        assert instance.revision == 4
        # ... and does not lower the highest fence.
        with pytest.raises(StaleLeaseError):
            await persistence.persist_workflow(instance, fence=4)
        await persistence.persist_workflow(instance, fence=5)
        assert (await persistence.get_workflow(instance.id)).revision == 5

    @pytest.mark.anyio
    async def test_fencing_is_kept_per_instance(self, persistence: PersistenceProvider) -> None:
        require(persistence, cap.FENCING)
        first, second = make_instance(), make_instance()
        await persistence.create_workflow(first)
        await persistence.create_workflow(second)
        await persistence.persist_workflow(first, fence=50)
        await persistence.persist_workflow(second, fence=2)
        assert second.revision == 2

    @pytest.mark.anyio
    async def test_fencing_a_stale_revision_with_an_older_fence_is_a_stale_lease(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.FENCING)
        instance = make_instance()
        await persistence.create_workflow(instance)
        old = await persistence.get_workflow(instance.id)
        await persistence.persist_workflow(instance, fence=8)
        with pytest.raises(StaleLeaseError):
            await persistence.persist_workflow(old, fence=7)
        # A stale revision under the current fence is a plain ConcurrencyError.
        with pytest.raises(ConcurrencyError) as refused:
            await persistence.persist_workflow(old, fence=8)
        assert not isinstance(refused.value, StaleLeaseError)
        assert (await persistence.get_workflow(instance.id)).revision == 2

    # -- instances: leased writes (providers with the ``leased-writes`` capability) ----------
    @pytest.fixture
    async def shared_lock(self, persistence: PersistenceProvider) -> LockProvider:
        """An entered lock provider keeping its leases in ``persistence``'s database: a
        suite for a provider with ``leased-writes`` overrides it; the tests using it skip
        without."""
        require(persistence, cap.LEASED_WRITES)
        pytest.skip(
            f"{type(persistence).__name__} declares 'leased-writes', but its suite supplies "
            "no shared_lock fixture (a lock keeping its leases in the store's database)"
        )

    @pytest.mark.anyio
    async def test_leased_writes_a_create_takes_the_lease(
        self, persistence: PersistenceProvider, shared_lock: LockProvider
    ) -> None:
        assert persistence.shares_leases_with(shared_lock)
        assert not persistence.shares_leases_with(MemoryLock())
        earlier = await shared_lock.acquire(new_id(), owner="someone", ttl=30)
        assert earlier is not None
        instance = make_instance()
        lease = await persistence.create_workflow(instance, lease=LeaseRequest("pass-1", 30))
        assert lease is not None
        assert (lease.key, lease.owner) == (instance.id, "pass-1")
        # A fresh token, larger than any the lock issued before.
        assert lease.token > earlier.token
        assert instance.revision == 1
        assert (await persistence.get_workflow(instance.id)).revision == 1
        # A lease of the lock like any other: held, renewed and released there.
        assert await shared_lock.acquire(instance.id, owner="pass-2", ttl=30) is None
        renewed = await shared_lock.renew(lease, ttl=30)
        if cap.FENCING in type(persistence).capabilities:
            # Its token is the instance's fence already: an older one is refused.
            with pytest.raises(StaleLeaseError):
                await persistence.persist_workflow(instance, fence=lease.token - 1)
            await persistence.persist_workflow(instance, fence=lease.token)
        await shared_lock.release(renewed)
        assert await shared_lock.acquire(instance.id, owner="pass-2", ttl=30) is not None

    @pytest.mark.anyio
    async def test_leased_writes_a_create_whose_key_is_held_stores_nothing(
        self, persistence: PersistenceProvider, shared_lock: LockProvider
    ) -> None:
        instance = make_instance()
        held = await shared_lock.acquire(instance.id, owner="other", ttl=30)
        assert held is not None
        assert await persistence.create_workflow(instance, lease=LeaseRequest("pass", 30)) is None
        with pytest.raises(WorkflowNotFoundError):
            await persistence.get_workflow(instance.id)
        await shared_lock.release(held)  # still the other's
        # The id is free to create (the caller's usual path).
        await persistence.create_workflow(instance)
        assert (await persistence.get_workflow(instance.id)).revision == 1

    @pytest.mark.anyio
    async def test_leased_writes_a_create_of_a_stored_id_takes_no_lease(
        self, persistence: PersistenceProvider, shared_lock: LockProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        again = attrs.evolve(instance, data={"count": 99})
        with pytest.raises(ConcurrencyError):
            await persistence.create_workflow(again, lease=LeaseRequest("pass", 30))
        assert (await persistence.get_workflow(instance.id)).data["count"] == 1
        assert await shared_lock.acquire(instance.id, owner="other", ttl=30) is not None

    @pytest.mark.anyio
    async def test_leased_writes_a_releasing_write_stores_and_frees_the_key(
        self, persistence: PersistenceProvider, shared_lock: LockProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        lease = await shared_lock.acquire(instance.id, owner="pass-1", ttl=30)
        assert lease is not None
        instance.data["count"] = 2
        instance.status = WorkflowStatus.COMPLETE
        subscription = make_subscription(instance.id)
        error = make_error(instance.id)
        await persistence.persist_workflow(
            instance, subscriptions=[subscription], errors=[error], release=lease
        )
        assert instance.revision == 2
        stored = await persistence.get_workflow(instance.id)
        assert (stored.revision, stored.status, stored.data["count"]) == (
            2,
            WorkflowStatus.COMPLETE,
            2,
        )
        assert (await persistence.get_subscription(subscription.id)).id == subscription.id
        assert [e.message for e in await persistence.get_errors(instance.id)] == ["boom"]
        # The key is free at once, and the lease given back is gone.
        with pytest.raises(LockNotHeldError):
            await shared_lock.release(lease)
        following = await shared_lock.acquire(instance.id, owner="pass-2", ttl=30)
        assert following is not None
        assert following.token > lease.token
        if cap.FENCING in type(persistence).capabilities:
            # The write was fenced by the lease's token.
            with pytest.raises(StaleLeaseError):
                await persistence.persist_workflow(stored, fence=lease.token - 1)

    @pytest.mark.anyio
    async def test_leased_writes_a_releasing_write_under_a_lost_lease_stores_nothing(
        self, persistence: PersistenceProvider, shared_lock: LockProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        stored = await persistence.get_workflow(instance.id)

        async def refused(lease: Lease) -> None:
            copy = await persistence.get_workflow(instance.id)
            copy.data["count"] = 99
            subscription = make_subscription(instance.id)
            event = Event("wfe.workflow-finished", instance.id, time=now_ms())
            with pytest.raises(LockNotHeldError):
                await persistence.persist_workflow(
                    copy, subscriptions=[subscription], events=[event], release=lease
                )
            assert copy.revision == 1
            assert await persistence.get_workflow(instance.id) == stored
            with pytest.raises(SubscriptionNotFoundError):
                await persistence.get_subscription(subscription.id)
            with pytest.raises(EventNotFoundError):
                await persistence.get_event(event.id)

        # Given back already.
        released = await shared_lock.acquire(instance.id, owner="pass-1", ttl=30)
        assert released is not None
        await shared_lock.release(released)
        await refused(released)
        # Lapsed, nobody took it yet: not current either.
        lapsed = await shared_lock.acquire(instance.id, owner="pass-2", ttl=0.05)
        assert lapsed is not None
        await anyio.sleep(0.2)
        await refused(lapsed)
        # Taken by a newer holder that has not written yet: refused, and theirs is kept.
        old = await shared_lock.acquire(instance.id, owner="pass-3", ttl=0.05)
        assert old is not None
        await anyio.sleep(0.2)
        newer = await shared_lock.acquire(instance.id, owner="pass-4", ttl=30)
        assert newer is not None
        await refused(old)
        await shared_lock.renew(newer, ttl=30)

    @pytest.mark.anyio
    async def test_leased_writes_a_refused_releasing_write_keeps_the_lease(
        self, persistence: PersistenceProvider, shared_lock: LockProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        lease = await shared_lock.acquire(instance.id, owner="pass-1", ttl=30)
        assert lease is not None
        stale = await persistence.get_workflow(instance.id)
        await persistence.persist_workflow(instance, fence=lease.token)
        with pytest.raises(ConcurrencyError) as refused:
            await persistence.persist_workflow(stale, release=lease)
        assert not isinstance(refused.value, (StaleLeaseError, LockNotHeldError))
        assert stale.revision == 1
        lease = await shared_lock.renew(lease, ttl=30)  # still held
        if cap.FENCING in type(persistence).capabilities:
            # A newer fence was accepted (a newer holder wrote): a stale lease, kept too.
            await persistence.persist_workflow(instance, fence=lease.token + 1_000_000)
            current = await persistence.get_workflow(instance.id)
            with pytest.raises(StaleLeaseError):
                await persistence.persist_workflow(current, release=lease)
            assert current.revision == 3
            await shared_lock.renew(lease, ttl=30)
        await shared_lock.release(lease)

    @pytest.mark.anyio
    async def test_concurrent_writers_of_one_revision_only_one_wins(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        copies = [await persistence.get_workflow(instance.id) for _ in range(8)]
        outcomes: list[str] = []

        async def write(index: int, copy: WorkflowInstance) -> None:
            copy.data["writer"] = index
            error = make_error(instance.id, message=f"from writer {index}")
            try:
                await persistence.persist_workflow(copy, errors=[error])
            except ConcurrencyError:
                outcomes.append("refused")
            else:
                outcomes.append(f"won {index}")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for index, copy in enumerate(copies):
                    tg.start_soon(write, index, copy)
        winners = [outcome for outcome in outcomes if outcome.startswith("won")]
        assert len(winners) == 1, outcomes
        winner = int(winners[0].split()[1])
        stored = await persistence.get_workflow(instance.id)
        assert stored.revision == 2
        assert stored.data["writer"] == winner
        assert [e.message for e in await persistence.get_errors(instance.id)] == [
            f"from writer {winner}"
        ]

    @pytest.mark.anyio
    async def test_persist_of_an_unknown_instance_is_refused(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance(revision=1)
        with pytest.raises((WorkflowNotFoundError, ConcurrencyError)):
            await persistence.persist_workflow(instance)
        with pytest.raises(WorkflowNotFoundError):
            await persistence.get_workflow(instance.id)

    @pytest.mark.anyio
    async def test_persist_stores_subscriptions_and_errors(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        subscription = make_subscription(instance.id, expires_at=now_ms() + timedelta(hours=1))
        error = make_error(instance.id)
        await persistence.persist_workflow(instance, subscriptions=[subscription], errors=[error])
        assert instance.revision == 2
        assert await persistence.get_subscription(subscription.id) == as_stored(subscription)
        assert list(await persistence.get_errors(instance.id)) == [as_stored(error)]

    @pytest.mark.anyio
    async def test_persist_stores_events_with_the_instance(
        self, persistence: PersistenceProvider
    ) -> None:
        now = now_ms()
        instance = make_instance()
        await persistence.create_workflow(instance)
        instance.status = WorkflowStatus.COMPLETE
        instance.complete_time = now
        first = Event("wfe.workflow-finished", instance.id, {"status": "complete"}, time=now)
        second = Event("other", "k", [1, "zwei"], time=now + timedelta(milliseconds=1))
        await persistence.persist_workflow(instance, events=[first, second])
        assert instance.revision == 2
        assert (await persistence.get_workflow(instance.id)).status == WorkflowStatus.COMPLETE
        assert await persistence.get_event(first.id) == as_stored(first)
        assert await persistence.get_event(second.id) == as_stored(second)
        later = now + timedelta(seconds=1)
        assert list(await persistence.get_runnable_events(later)) == _ids([first, second])
        assert list(await persistence.get_events("wfe.workflow-finished", instance.id, now)) == [
            first.id
        ]
        # Stored like create_event: marking works on them.
        await persistence.mark_event_processed(first.id)
        assert list(await persistence.get_runnable_events(later)) == [second.id]

    @pytest.mark.anyio
    async def test_refused_write_stores_none_of_its_events(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        winner = await persistence.get_workflow(instance.id)
        loser = await persistence.get_workflow(instance.id)
        await persistence.persist_workflow(winner)
        loser.status = WorkflowStatus.COMPLETE
        event = Event("wfe.workflow-finished", instance.id, time=now_ms())
        with pytest.raises(ConcurrencyError):
            await persistence.persist_workflow(loser, events=[event])
        assert loser.revision == 1
        with pytest.raises(EventNotFoundError):
            await persistence.get_event(event.id)
        later = now_ms() + timedelta(seconds=1)
        assert list(await persistence.get_runnable_events(later)) == []
        assert list(await persistence.get_events(event.name, event.key, event.time)) == []
        assert await persistence.get_workflow(instance.id) == as_stored(winner)

    @pytest.mark.anyio
    async def test_an_event_id_already_stored_refuses_the_write(
        self, persistence: PersistenceProvider
    ) -> None:
        instance = make_instance()
        await persistence.create_workflow(instance)
        existing = Event("approval", "1", {"first": True}, time=now_ms())
        await persistence.create_event(existing)
        fresh = Event("approval", "2", time=now_ms())
        duplicate = Event("approval", "3", {"first": False}, time=now_ms(), id=existing.id)
        error = make_error(instance.id)
        instance.status = WorkflowStatus.COMPLETE
        with pytest.raises(ConcurrencyError):
            await persistence.persist_workflow(instance, errors=[error], events=[fresh, duplicate])
        assert instance.revision == 1
        stored = await persistence.get_workflow(instance.id)
        assert (stored.revision, stored.status) == (1, WorkflowStatus.RUNNABLE)
        assert await persistence.get_event(existing.id) == as_stored(existing)
        with pytest.raises(EventNotFoundError):
            await persistence.get_event(fresh.id)
        assert list(await persistence.get_errors(instance.id)) == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("executor_write", [True, False], ids=["changed", "whole"])
    async def test_a_new_subscription_reopens_the_earliest_stored_event_it_matches(
        self, persistence: PersistenceProvider, executor_write: bool
    ) -> None:
        # An event published before a subscription was stored, and processed (nobody
        # waited), must reach it even if the writer dies before queueing it: the write
        # storing the subscription marks it unprocessed, so the recovery sweep finds it.
        # Only the earliest it matches (the one it gets): the later ones stay processed,
        # so a key reused for years costs a new wait one event, not its whole history.
        now = now_ms()
        as_of = now - timedelta(minutes=1)
        instance = make_instance()
        await persistence.create_workflow(instance)
        before = Event("approval", "42", time=as_of - timedelta(seconds=1), is_processed=True)
        at_as_of = Event("approval", "42", time=as_of, is_processed=True)
        after = Event("approval", "42", time=now, is_processed=True)
        future = Event("approval", "42", time=now + timedelta(hours=1), is_processed=True)
        waiting = Event("approval", "42", time=now)
        other_key = Event("approval", "43", time=now, is_processed=True)
        other_name = Event("rejection", "42", time=now, is_processed=True)
        for event in (before, at_as_of, after, future, waiting, other_key, other_name):
            await persistence.create_event(event)
        subscription = make_subscription(instance.id, subscribe_as_of=as_of)
        await persistence.persist_workflow(
            instance,
            subscriptions=[subscription],
            changed_pointers=[] if executor_write else None,
        )
        processed = {
            event.id: (await persistence.get_event(event.id)).is_processed
            for event in (before, at_as_of, after, future, waiting, other_key, other_name)
        }
        assert processed == {
            before.id: True,
            at_as_of.id: False,
            after.id: True,
            future.id: True,
            waiting.id: False,
            other_key.id: True,
            other_name.id: True,
        }
        # The recovery sweep's query finds them, oldest first.
        assert list(await persistence.get_runnable_events(now)) == _ids([at_as_of, waiting])
        # A second subscription of the key from a later time reopens its own earliest.
        later = make_subscription(instance.id, subscribe_as_of=as_of + timedelta(seconds=1))
        await persistence.persist_workflow(
            instance, subscriptions=[later], changed_pointers=[] if executor_write else None
        )
        assert not (await persistence.get_event(after.id)).is_processed
        assert (await persistence.get_event(future.id)).is_processed

    @pytest.mark.anyio
    async def test_a_closed_subscription_or_a_refused_write_reopens_nothing(
        self, persistence: PersistenceProvider
    ) -> None:
        now = now_ms()
        instance = make_instance()
        await persistence.create_workflow(instance)
        event = Event("approval", "42", time=now, is_processed=True)
        await persistence.create_event(event)
        # A subscription written closed (the write of a delivery) reopens nothing: its
        # event was delivered.
        closed = make_subscription(instance.id, subscribe_as_of=now, terminated=True)
        await persistence.persist_workflow(instance, subscriptions=[closed])
        assert (await persistence.get_event(event.id)).is_processed
        # A refused write stores nothing, so it reopens nothing either.
        stale = await persistence.get_workflow(instance.id)
        await persistence.persist_workflow(instance)
        with pytest.raises(ConcurrencyError):
            await persistence.persist_workflow(
                stale, subscriptions=[make_subscription(instance.id, subscribe_as_of=now)]
            )
        assert (await persistence.get_event(event.id)).is_processed
        assert list(await persistence.get_runnable_events(now)) == []

    # -- instances: queries ----------------------------------------------------------------
    @pytest.mark.anyio
    async def test_runnable_instances_by_time(self, persistence: PersistenceProvider) -> None:
        now = now_ms()
        due = make_instance(next_execution=now - timedelta(seconds=5))
        due_now = make_instance(next_execution=now)
        future = make_instance(next_execution=now + timedelta(hours=1))
        unscheduled = make_instance(next_execution=None)
        suspended = make_instance(
            status=WorkflowStatus.SUSPENDED, next_execution=now - timedelta(seconds=5)
        )
        complete = make_instance(
            status=WorkflowStatus.COMPLETE,
            next_execution=now - timedelta(seconds=5),
            complete_time=now,
        )
        for instance in (due, due_now, future, unscheduled, suspended, complete):
            await persistence.create_workflow(instance)
        assert set(await persistence.get_runnable_instances(now)) == {due.id, due_now.id}
        later = now + timedelta(hours=2)
        assert set(await persistence.get_runnable_instances(later)) == {
            due.id,
            due_now.id,
            future.id,
        }
        assert list(await persistence.get_runnable_instances(now - timedelta(minutes=1))) == []
        # Writes move instances in and out: one finishes, one falls due, one is unscheduled.
        due.status = WorkflowStatus.COMPLETE
        due.complete_time = now
        future.next_execution = now - timedelta(seconds=1)
        due_now.next_execution = None
        unscheduled.next_execution = now - timedelta(seconds=2)
        for instance in (due, future, due_now, unscheduled):
            await persistence.persist_workflow(instance)
        assert list(await persistence.get_runnable_instances(now)) == [unscheduled.id, future.id]

    @pytest.mark.anyio
    async def test_next_execution_time(self, persistence: PersistenceProvider) -> None:
        assert await persistence.next_execution_time() is None
        now = now_ms()
        await persistence.create_workflow(
            make_instance(status=WorkflowStatus.SUSPENDED, next_execution=now - timedelta(hours=1))
        )
        await persistence.create_workflow(make_instance(next_execution=None))
        assert await persistence.next_execution_time() is None
        soon = make_instance(next_execution=now + timedelta(seconds=10))
        later = make_instance(next_execution=now + timedelta(seconds=20))
        await persistence.create_workflow(later)
        await persistence.create_workflow(soon)
        assert await persistence.next_execution_time() == now + timedelta(seconds=10)
        soon.status = WorkflowStatus.COMPLETE
        soon.complete_time = now
        await persistence.persist_workflow(soon)
        assert await persistence.next_execution_time() == now + timedelta(seconds=20)

    @pytest.mark.anyio
    async def test_list_workflows_filters_pages_and_orders(
        self, persistence: PersistenceProvider
    ) -> None:
        base = now_ms()
        specs = [
            ("alpha", WorkflowStatus.RUNNABLE, "r-0"),
            ("beta", WorkflowStatus.COMPLETE, "r-1"),
            ("alpha", WorkflowStatus.COMPLETE, "r-2"),
            ("beta", WorkflowStatus.RUNNABLE, None),
            ("alpha", WorkflowStatus.SUSPENDED, "r-0"),
        ]
        # Created out of time order: the listing orders by create_time, newest first.
        created = []
        for index in (3, 0, 4, 1, 2):
            definition_id, status, reference = specs[index]
            instance = make_instance(
                definition_id=definition_id,
                status=status,
                reference=reference,
                create_time=base - timedelta(minutes=index),
            )
            await persistence.create_workflow(instance)
            created.append((index, instance))
        newest_first = [instance for _, instance in sorted(created, key=lambda pair: pair[0])]

        page = await persistence.list_workflows()
        assert page.total == 5
        assert _ids(page.items) == _ids(newest_first)
        assert list(page.items) == [as_stored(instance) for instance in newest_first]

        page = await persistence.list_workflows(skip=1, take=2)
        assert page.total == 5
        assert _ids(page.items) == _ids(newest_first[1:3])
        page = await persistence.list_workflows(skip=10)
        assert (list(page.items), page.total) == ([], 5)

        def expected(**match: Any) -> list[str]:
            return [
                instance.id
                for instance in newest_first
                if all(getattr(instance, key) == value for key, value in match.items())
            ]

        for match in (
            {"status": WorkflowStatus.COMPLETE},
            {"definition_id": "alpha"},
            {"reference": "r-0"},
            {"definition_id": "alpha", "status": WorkflowStatus.COMPLETE},
            {"definition_id": "beta", "reference": "r-0"},
        ):
            page = await persistence.list_workflows(**match)
            assert _ids(page.items) == expected(**match), match
            assert page.total == len(expected(**match)), match
        page = await persistence.list_workflows(definition_id="alpha", take=1, skip=1)
        assert _ids(page.items) == expected(definition_id="alpha")[1:2]
        assert page.total == 3

    @pytest.mark.anyio
    async def test_purge_by_age_and_status(self, persistence: PersistenceProvider) -> None:
        now = now_ms()
        old = now - timedelta(days=10)

        async def finished(status: WorkflowStatus, at: datetime) -> WorkflowInstance:
            instance = make_instance(create_time=at - timedelta(hours=1))
            await persistence.create_workflow(instance)
            instance.status = status
            instance.complete_time = at
            await persistence.persist_workflow(
                instance,
                subscriptions=[
                    make_subscription(instance.id, event_key=instance.id, subscribe_as_of=old)
                ],
                errors=[make_error(instance.id)],
            )
            return instance

        old_complete = await finished(WorkflowStatus.COMPLETE, old)
        old_terminated = await finished(WorkflowStatus.TERMINATED, old)
        old_failed = await finished(WorkflowStatus.FAILED, old)
        recent_complete = await finished(WorkflowStatus.COMPLETE, now)
        running = make_instance(create_time=old)
        await persistence.create_workflow(running)

        purged = await persistence.purge_workflows(
            older_than=now - timedelta(days=1),
            statuses=[WorkflowStatus.COMPLETE, WorkflowStatus.TERMINATED],
        )
        assert purged == 2
        for gone in (old_complete, old_terminated):
            with pytest.raises(WorkflowNotFoundError):
                await persistence.get_workflow(gone.id)
            assert list(await persistence.get_errors(gone.id)) == []
            assert list(await persistence.get_subscriptions("approval", gone.id, now)) == []
        for kept in (old_failed, recent_complete, running):
            assert (await persistence.get_workflow(kept.id)).id == kept.id
        for kept in (old_failed, recent_complete):
            assert len(await persistence.get_errors(kept.id)) == 1
            assert len(await persistence.get_subscriptions("approval", kept.id, now)) == 1
        assert (await persistence.list_workflows()).total == 3
        assert (
            await persistence.purge_workflows(
                older_than=now - timedelta(days=1), statuses=[WorkflowStatus.COMPLETE]
            )
            == 0
        )

    # -- events ----------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_event_round_trip(self, persistence: PersistenceProvider) -> None:
        event = Event(
            name="approval",
            key="42",
            data={"ok": True, "by": "zoë", "when": [1, 2.5]},
            time=now_ms(),
            trace_context=TraceContext((("traceparent", _TRACEPARENT), ("baggage", "k=v"))),
        )
        await persistence.create_event(event)
        assert await persistence.get_event(event.id) == as_stored(event)
        with pytest.raises(EventNotFoundError):
            await persistence.get_event(new_id())

    @pytest.mark.anyio
    async def test_runnable_events_and_processed_flags(
        self, persistence: PersistenceProvider
    ) -> None:
        now = now_ms()
        first = Event("approval", "1", time=now - timedelta(seconds=2))
        second = Event("approval", "2", time=now - timedelta(seconds=1))
        exactly_now = Event("other", "3", time=now)
        future = Event("approval", "4", time=now + timedelta(hours=1))
        processed = Event("approval", "5", time=now - timedelta(seconds=3), is_processed=True)
        for event in (future, second, processed, exactly_now, first):
            await persistence.create_event(event)
        assert list(await persistence.get_runnable_events(now)) == _ids(
            [first, second, exactly_now]
        )
        await persistence.mark_event_processed(first.id)
        assert (await persistence.get_event(first.id)).is_processed
        assert list(await persistence.get_runnable_events(now)) == _ids([second, exactly_now])
        await persistence.mark_event_processed(first.id)  # twice: still processed
        await persistence.mark_event_unprocessed(first.id)
        assert not (await persistence.get_event(first.id)).is_processed
        assert list(await persistence.get_runnable_events(now)) == _ids(
            [first, second, exactly_now]
        )
        assert list(await persistence.get_runnable_events(now + timedelta(hours=2))) == _ids(
            [first, second, exactly_now, future]
        )

    @pytest.mark.anyio
    async def test_get_events_by_name_key_and_time(self, persistence: PersistenceProvider) -> None:
        t0 = now_ms() - timedelta(minutes=10)
        t1, t2 = t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)
        early = Event("approval", "k", time=t0)
        processed = Event("approval", "k", time=t1, is_processed=True)
        other_key = Event("approval", "other", time=t1)
        other_name = Event("rejection", "k", time=t1)
        late = Event("approval", "k", time=t2)
        for event in (late, other_name, processed, early, other_key):
            await persistence.create_event(event)
        assert list(await persistence.get_events("approval", "k", t1)) == _ids([processed, late])
        assert list(await persistence.get_events("approval", "k", t0)) == _ids(
            [early, processed, late]
        )
        assert list(await persistence.get_events("approval", "k", t2 + timedelta(seconds=1))) == []
        assert list(await persistence.get_events("approval", "missing", t0)) == []

    @pytest.mark.anyio
    async def test_marking_an_unknown_event(self, persistence: PersistenceProvider) -> None:
        with pytest.raises(EventNotFoundError):
            await persistence.mark_event_processed(new_id())
        with pytest.raises(EventNotFoundError):
            await persistence.mark_event_unprocessed(new_id())

    # -- subscriptions ---------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_subscription_round_trip(self, persistence: PersistenceProvider) -> None:
        subscription = make_subscription(
            new_id(), expires_at=now_ms() + timedelta(minutes=5), event_id=None
        )
        await persistence.create_subscription(subscription)
        assert await persistence.get_subscription(subscription.id) == as_stored(subscription)
        with pytest.raises(SubscriptionNotFoundError):
            await persistence.get_subscription(new_id())

    @pytest.mark.anyio
    async def test_subscriptions_match_by_name_key_and_as_of(
        self, persistence: PersistenceProvider
    ) -> None:
        t0 = now_ms() - timedelta(minutes=10)
        t1, t2, t3 = (t0 + timedelta(minutes=n) for n in (1, 2, 3))
        workflow_id = new_id()
        oldest = make_subscription(workflow_id, subscribe_as_of=t0)
        newer = make_subscription(workflow_id, subscribe_as_of=t1)
        at_as_of = make_subscription(workflow_id, subscribe_as_of=t2)
        future = make_subscription(workflow_id, subscribe_as_of=t3)
        other_key = make_subscription(workflow_id, subscribe_as_of=t0, event_key="other")
        other_name = make_subscription(workflow_id, subscribe_as_of=t0, event_name="other")
        closed = make_subscription(workflow_id, subscribe_as_of=t0, terminated=True)
        for subscription in (future, at_as_of, other_key, newer, closed, other_name, oldest):
            await persistence.create_subscription(subscription)

        got = await persistence.get_subscriptions("approval", "42", t2)
        assert _ids(got) == _ids([oldest, newer, at_as_of])
        assert got[0] == as_stored(oldest)

        await persistence.terminate_subscription(oldest.id)
        assert (await persistence.get_subscription(oldest.id)).terminated
        assert _ids(await persistence.get_subscriptions("approval", "42", t2)) == _ids(
            [newer, at_as_of]
        )
        await persistence.terminate_subscription(oldest.id)  # idempotent
        assert (await persistence.get_subscription(oldest.id)).terminated
        with pytest.raises(SubscriptionNotFoundError):
            await persistence.terminate_subscription(new_id())

    # -- external work (capability ``external-work``) -------------------------------------
    @pytest.mark.anyio
    async def test_external_work_open_subscriptions_by_name_any_key(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.EXTERNAL_WORK)
        t0 = now_ms() - timedelta(minutes=10)
        workflow_id = new_id()
        name = "wfe.test-task"
        first = make_subscription(workflow_id, event_name=name, event_key="a", subscribe_as_of=t0)
        second = make_subscription(
            workflow_id,
            event_name=name,
            event_key="b",
            subscribe_as_of=t0 + timedelta(minutes=1),
            data={"prompt": "Approve?", "options": [{"value": "yes", "label": "Yes"}]},
        )
        future = make_subscription(
            workflow_id,
            event_name=name,
            event_key="c",
            subscribe_as_of=now_ms() + timedelta(days=1),
        )
        closed = make_subscription(
            workflow_id, event_name=name, subscribe_as_of=t0, terminated=True
        )
        other = make_subscription(workflow_id, subscribe_as_of=t0)
        for subscription in (future, second, closed, other, first):
            await persistence.create_subscription(subscription)

        got = await persistence.get_open_subscriptions(name)
        assert _ids(got) == _ids([first, second, future])
        assert got[1] == as_stored(second)  # the step's data comes back
        assert _ids(await persistence.get_open_subscriptions(name, skip=1, take=1)) == [second.id]
        assert list(await persistence.get_open_subscriptions("wfe.nothing")) == []

    @pytest.mark.anyio
    async def test_external_work_claims_the_oldest_once(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.EXTERNAL_WORK)
        now = now_ms()
        name = "wfe.test-activity"
        workflow_id = new_id()
        older = make_subscription(
            workflow_id,
            event_name=name,
            event_key=new_id(),
            subscribe_as_of=now - timedelta(minutes=2),
        )
        newer = make_subscription(
            workflow_id,
            event_name=name,
            event_key=new_id(),
            subscribe_as_of=now - timedelta(minutes=1),
            data={"amount": 12},
        )
        future = make_subscription(
            workflow_id,
            event_name=name,
            event_key=new_id(),
            subscribe_as_of=now + timedelta(hours=1),
        )
        closed = make_subscription(
            workflow_id, event_name=name, subscribe_as_of=now - timedelta(hours=1), terminated=True
        )
        for subscription in (future, newer, closed, older):
            await persistence.create_subscription(subscription)
        expiry = now + timedelta(minutes=5)

        claim = await persistence.claim_subscription(
            name, token="t1", worker_id="w1", expires_at=expiry, as_of=now
        )
        assert claim is not None
        assert claim.id == older.id
        assert (claim.external_token, claim.external_worker_id) == ("t1", "w1")
        assert claim.external_token_expiry == expiry
        assert await persistence.get_subscription(older.id) == claim

        claim = await persistence.claim_subscription(
            name, token="t2", worker_id="w2", expires_at=expiry, as_of=now
        )
        assert claim is not None
        assert claim.id == newer.id
        assert claim.data == {"amount": 12}
        # The rest is claimed, closed, or not due yet.
        assert (
            await persistence.claim_subscription(
                name, token="t3", worker_id="w3", expires_at=expiry, as_of=now
            )
            is None
        )
        assert (
            await persistence.claim_subscription(
                "wfe.other", token="t4", worker_id="w3", expires_at=expiry, as_of=now
            )
            is None
        )

    @pytest.mark.anyio
    async def test_external_work_a_lapsed_claim_is_taken_again_and_released_by_its_token(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.EXTERNAL_WORK)
        now = now_ms()
        name = "wfe.test-activity"
        subscription = make_subscription(
            new_id(),
            event_name=name,
            event_key=new_id(),
            subscribe_as_of=now - timedelta(minutes=1),
        )
        await persistence.create_subscription(subscription)
        lapse = now + timedelta(seconds=30)
        first = await persistence.claim_subscription(
            name, token="old", worker_id="w1", expires_at=lapse, as_of=now
        )
        assert first is not None
        # Before the claim lapses nobody else gets it; at its expiry it is claimable again.
        assert (
            await persistence.claim_subscription(
                name,
                token="x",
                worker_id="w2",
                expires_at=lapse,
                as_of=lapse - timedelta(seconds=1),
            )
            is None
        )
        second = await persistence.claim_subscription(
            name, token="new", worker_id="w2", expires_at=lapse + timedelta(minutes=5), as_of=lapse
        )
        assert second is not None
        assert second.id == subscription.id
        assert second.external_token == "new"

        # The old token releases nothing; the current one clears the claim whole.
        assert not await persistence.release_subscription_claim(subscription.id, "old")
        assert (await persistence.get_subscription(subscription.id)).external_token == "new"
        assert await persistence.release_subscription_claim(subscription.id, "new")
        released = await persistence.get_subscription(subscription.id)
        assert released.external_token is None
        assert released.external_worker_id is None
        assert released.external_token_expiry is None
        assert not await persistence.release_subscription_claim(subscription.id, "new")
        again = await persistence.claim_subscription(
            name, token="third", worker_id="w3", expires_at=lapse, as_of=now
        )
        assert again is not None
        assert again.id == subscription.id
        with pytest.raises(SubscriptionNotFoundError):
            await persistence.release_subscription_claim(new_id(), "third")

    @pytest.mark.anyio
    async def test_external_work_concurrent_claims_never_share_a_subscription(
        self, persistence: PersistenceProvider
    ) -> None:
        require(persistence, cap.EXTERNAL_WORK)
        now = now_ms()
        name = "wfe.test-activity"
        created = [
            make_subscription(
                new_id(),
                event_name=name,
                event_key=new_id(),
                subscribe_as_of=now - timedelta(seconds=n),
            )
            for n in range(1, 5)
        ]
        for subscription in created:
            await persistence.create_subscription(subscription)
        claimed: list[str] = []

        async def claim(index: int) -> None:
            got = await persistence.claim_subscription(
                name,
                token=f"t{index}",
                worker_id=f"w{index}",
                expires_at=now + timedelta(minutes=5),
                as_of=now,
            )
            if got is not None:
                claimed.append(got.id)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for index in range(10):
                    tg.start_soon(claim, index)
        assert len(claimed) == len(set(claimed)), claimed
        # A claimer that lost a race may come back empty-handed, but none is claimed twice and
        # what is left is claimed by the next call.
        while (
            got := await persistence.claim_subscription(
                name,
                token=new_id(),
                worker_id="late",
                expires_at=now + timedelta(minutes=5),
                as_of=now,
            )
        ) is not None:
            claimed.append(got.id)
        assert sorted(claimed) == sorted(_ids(created))

    # -- errors ----------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_errors_oldest_first(self, persistence: PersistenceProvider) -> None:
        instance = make_instance()
        other = make_instance()
        await persistence.create_workflow(instance)
        await persistence.create_workflow(other)
        now = now_ms()
        late = make_error(instance.id, message="late", time=now)
        early = make_error(instance.id, message="early", time=now - timedelta(seconds=5))
        middle = make_error(instance.id, message="middle", time=now - timedelta(seconds=2))
        await persistence.persist_workflow(instance, errors=[late])
        await persistence.persist_workflow(instance, errors=[early, middle])
        await persistence.persist_workflow(other, errors=[make_error(other.id)])
        assert list(await persistence.get_errors(instance.id)) == [
            as_stored(error) for error in (early, middle, late)
        ]
        assert len(await persistence.get_errors(other.id)) == 1
        assert list(await persistence.get_errors(new_id())) == []

    # -- properties ------------------------------------------------------------------------
    @pytest.mark.anyio
    async def test_any_instance_round_trips(self, persistence: PersistenceProvider) -> None:
        """Property: whatever the strategies generate comes back as stored (data unstructured),
        with its subscriptions, errors and events."""

        @PROPERTY_SETTINGS
        @given(
            instance=strategies.workflow_instances(),
            subscriptions=st.lists(strategies.event_subscriptions(), max_size=2),
            errors=st.lists(strategies.execution_errors(), max_size=2),
            event=strategies.events(),
        )
        def check(
            instance: WorkflowInstance,
            subscriptions: list[EventSubscription],
            errors: list[ExecutionError],
            event: Event,
        ) -> None:
            # Fresh ids: shrinking reuses values, and the store outlives one example.
            instance = attrs.evolve(instance, id=new_id())
            subscriptions = [
                attrs.evolve(sub, id=new_id(), workflow_id=instance.id) for sub in subscriptions
            ]
            errors = [attrs.evolve(error, workflow_id=instance.id) for error in errors]
            event = attrs.evolve(event, id=new_id())

            call(persistence.create_workflow, instance)
            assert call(persistence.get_workflow, instance.id) == as_stored(instance)
            call(persistence.persist_workflow, instance, subscriptions=subscriptions, errors=errors)
            assert instance.revision == 2
            assert call(persistence.get_workflow, instance.id) == as_stored(instance)
            for subscription in subscriptions:
                got = call(persistence.get_subscription, subscription.id)
                assert got == as_stored(subscription)
            stored_errors = call(persistence.get_errors, instance.id)
            assert sorted(stored_errors, key=repr) == sorted(map(as_stored, errors), key=repr)
            assert [error.time for error in stored_errors] == sorted(e.time for e in errors)
            call(persistence.create_event, event)
            assert call(persistence.get_event, event.id) == as_stored(event)

        await anyio.to_thread.run_sync(check)

    @pytest.mark.anyio
    async def test_matches_the_reference_model(self, persistence: PersistenceProvider) -> None:
        """Random sequences of writes and queries agree with :class:`ReferencePersistence`."""
        machine = persistence_state_machine(persistence)
        await anyio.to_thread.run_sync(
            functools.partial(
                run_state_machine_as_test,
                machine,
                settings=settings(MACHINE_SETTINGS, max_examples=15, stateful_step_count=35),
            )
        )


_BASE_TIME = datetime(2030, 1, 1, tzinfo=UTC)


def persistence_state_machine(persistence: PersistenceProvider) -> type[RuleBasedStateMachine]:
    """A state machine running the same writes on ``persistence`` and on a fresh
    :class:`~wfe_core.testing.conformance.reference.ReferencePersistence` (the oracle) and
    comparing every answer. Its writes include the executor's (pointers changed in place,
    appended, named in ``changed_pointers``, ``children`` grown) and whole rewrites.

    Each run works on its own definition id, event names and fresh ids, and compares only what
    belongs to it, so runs share a store safely. Stored times are all distinct, so orders never
    depend on how a provider breaks ties. Run it in a worker thread of the event loop that owns
    ``persistence`` (``anyio.to_thread.run_sync``).
    """
    offsets = st.integers(min_value=0, max_value=120)
    maybe_offsets = st.none() | offsets

    class PersistenceMachine(RuleBasedStateMachine):
        copies = Bundle("copies")  # (provider's copy, model's copy) of one instance
        workflow_ids = Bundle("workflow_ids")
        event_ids = Bundle("event_ids")
        subscription_ids = Bundle("subscription_ids")

        def __init__(self) -> None:
            super().__init__()
            self.model = ReferencePersistence()
            self.prefix = f"wfe-test-{new_id()[:12]}"
            self.mine: dict[str, set[str]] = {"workflows": set(), "events": set()}
            self.ticks = 0

        def at(self, seconds: int) -> datetime:
            """A time ``seconds`` after the base, made unique by a millisecond counter."""
            self.ticks += 1
            return _BASE_TIME + timedelta(seconds=seconds, milliseconds=self.ticks)

        def both(self, method: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            """Call ``method`` on both; both succeed, or both raise the same error type."""
            outcomes = []
            for store in (persistence, self.model):
                copied_args = [attrs.evolve(a) if attrs.has(type(a)) else a for a in args]
                try:
                    outcomes.append(("ok", call(getattr(store, method), *copied_args, **kwargs)))
                except WfeError as error:
                    outcomes.append(("error", error))
            (kind, got), (model_kind, expected) = outcomes
            if kind == "error" or model_kind == "error":
                assert (kind, type(got)) == (model_kind, type(expected)), (method, got, expected)
            return got, expected

        # -- instances ---------------------------------------------------------------------
        @rule(
            target=workflow_ids,
            status=st.sampled_from(WorkflowStatus),
            data=strategies.json_values(max_leaves=4),
            next_at=maybe_offsets,
            pointers=st.integers(min_value=0, max_value=2),
        )
        def create(
            self, status: WorkflowStatus, data: Any, next_at: int | None, pointers: int
        ) -> str:
            return self.new_instance(status, data, next_at, pointers)

        def new_instance(
            self, status: WorkflowStatus, data: Any, next_at: int | None, pointers: int
        ) -> str:
            # Simple instances (the round-trip property covers every field): they shrink fast.
            instance = make_instance(
                definition_id=self.prefix,
                status=status,
                data=data,
                create_time=self.at(0),
                next_execution=None if next_at is None else self.at(next_at),
                complete_time=self.at(0) if status.is_finished else None,
                pointers=[ExecutionPointer(step_id=step) for step in range(pointers)],
            )
            call(persistence.create_workflow, attrs.evolve(instance))
            call(self.model.create_workflow, attrs.evolve(instance))
            self.mine["workflows"].add(instance.id)
            return instance.id

        @rule(target=copies, workflow_id=workflow_ids)
        def load(self, workflow_id: str) -> tuple[WorkflowInstance, WorkflowInstance]:
            return self.copy_of(workflow_id)

        @rule(target=copies, pair=copies)
        def reload(
            self, pair: tuple[WorkflowInstance, WorkflowInstance]
        ) -> tuple[WorkflowInstance, WorkflowInstance]:
            """Another copy of an instance already loaded: once one of them is written, the
            other is stale, and the stores must refuse its writes."""
            return self.copy_of(pair[0].id)

        def copy_of(self, workflow_id: str) -> tuple[WorkflowInstance, WorkflowInstance]:
            """The instance as each store reads it back (they must agree)."""
            got, expected = self.both("get_workflow", workflow_id)
            assert got == expected
            return got, expected

        @initialize(target=copies, pointers=st.integers(min_value=1, max_value=3))
        def first(self, pointers: int) -> tuple[WorkflowInstance, WorkflowInstance]:
            """Every run starts with a runnable instance loaded, so the writes that change
            pointers (``step``, ``rewrite``) can run from its first step on."""
            workflow_id = self.new_instance(WorkflowStatus.RUNNABLE, {"n": 0}, None, pointers)
            return self.copy_of(workflow_id)

        @rule(
            pair=copies,
            status=st.sampled_from(WorkflowStatus),
            data=strategies.json_values(max_leaves=4),
            next_at=maybe_offsets,
            subscribe_at=st.lists(st.tuples(st.sampled_from("ab"), offsets), max_size=2),
            error_count=st.integers(min_value=0, max_value=2),
            event_at=st.lists(st.tuples(st.sampled_from("ab"), offsets), max_size=2),
        )
        def persist(
            self,
            pair: tuple[WorkflowInstance, WorkflowInstance],
            status: WorkflowStatus,
            data: Any,
            next_at: int | None,
            subscribe_at: list[tuple[str, int]],
            error_count: int,
            event_at: list[tuple[str, int]],
        ) -> None:
            ours = pair[0]
            finished_at = self.at(0) if status.is_finished else None
            next_execution = None if next_at is None else self.at(next_at)
            for copy in pair:
                copy.status = status
                copy.data = data
                copy.complete_time = finished_at
                copy.next_execution = next_execution
            subscriptions = [
                make_subscription(
                    ours.id,
                    event_name=self.prefix,
                    event_key=key,
                    subscribe_as_of=self.at(offset),
                    create_time=self.at(0),
                )
                for key, offset in subscribe_at
            ]
            errors = [make_error(ours.id, time=self.at(0)) for _ in range(error_count)]
            events = [
                Event(name=self.prefix, key=key, data=offset, time=self.at(offset))
                for key, offset in event_at
            ]
            # Counted as this run's whether the write is refused or not: a provider storing
            # the events of a refused write then disagrees with the model in find_events.
            self.mine["events"].update(event.id for event in events)
            self.write(pair, subscriptions=subscriptions, errors=errors, events=events)

        def write(
            self,
            pair: tuple[WorkflowInstance, WorkflowInstance],
            *,
            changed_pointers: set[str] | None = None,
            subscriptions: list[EventSubscription] | None = None,
            errors: list[ExecutionError] | None = None,
            events: list[Event] | None = None,
        ) -> None:
            """Persist both copies (with copies of the rest); both store or both refuse."""
            ours, model = pair
            outcomes = []
            for store, copy in ((persistence, ours), (self.model, model)):
                try:
                    call(
                        store.persist_workflow,
                        copy,
                        subscriptions=[attrs.evolve(s) for s in subscriptions or ()],
                        errors=[attrs.evolve(e) for e in errors or ()],
                        events=[attrs.evolve(e) for e in events or ()],
                        changed_pointers=changed_pointers,
                    )
                except ConcurrencyError:
                    outcomes.append("refused")
                else:
                    outcomes.append("stored")
            assert outcomes[0] == outcomes[1], f"provider {outcomes[0]}, model {outcomes[1]}"
            assert ours.revision == model.revision
            self.get(ours.id)

        @rule(
            pair=copies,
            touched=st.lists(st.integers(min_value=0, max_value=7), max_size=2),
            status=st.sampled_from(PointerStatus),
            outcome=strategies.json_values(max_leaves=3),
            container=st.none() | st.integers(min_value=0, max_value=7),
            added=st.integers(min_value=0, max_value=3),
            name_added=st.booleans(),
        )
        def step(
            self,
            pair: tuple[WorkflowInstance, WorkflowInstance],
            touched: list[int],
            status: PointerStatus,
            outcome: Any,
            container: int | None,
            added: int,
            name_added: bool,
        ) -> None:
            """A write as the executor makes it: pointers changed in place and named, new
            pointers appended (named or not), a container's ``children`` grown by their ids."""
            count = len(pair[0].pointers)
            new_ids = [new_id() for _ in range(added)]
            started = self.at(0)
            changed: set[str] = set()
            for copy in pair:
                for index in touched if count else ():
                    pointer = copy.pointers[index % count]
                    pointer.status = status
                    pointer.outcome = outcome
                    pointer.attempt += 1
                    pointer.extensions[f"step-{self.ticks}"] = outcome
                    changed.add(pointer.id)
                parent = (
                    None if container is None or not count else copy.pointers[container % count]
                )
                for pointer_id in new_ids:
                    copy.pointers.append(
                        ExecutionPointer(
                            step_id=len(copy.pointers),
                            id=pointer_id,
                            scope=[] if parent is None else [parent.id],
                            start_time=started,
                        )
                    )
                if parent is not None and new_ids:
                    parent.children.extend(new_ids)
                    changed.add(parent.id)
            if name_added:
                changed.update(new_ids)
            self.write(pair, changed_pointers=changed)

        @rule(
            workflow_id=workflow_ids,
            touched=st.lists(st.integers(min_value=0, max_value=7), max_size=2),
            end=st.booleans(),
            container=st.none() | st.integers(min_value=0, max_value=7),
            added=st.integers(min_value=0, max_value=2),
        )
        def live_step(
            self,
            workflow_id: str,
            touched: list[int],
            end: bool,
            container: int | None,
            added: int,
        ) -> None:
            """A pass's write over the provider's live part (``pointer_write``, unless the
            part is whole), the same changes made to the whole instance in the model: the
            live part holds the model's pointers at their positions, and both store alike."""
            live = call(persistence.get_live_part, workflow_id)
            whole = call(self.model.get_workflow, workflow_id)
            part = live.instance
            assert attrs.evolve(part, pointers=[]) == attrs.evolve(whole, pointers=[])

            def position(index: int) -> int:
                return index if live.whole else live.positions[part.pointers[index].id]

            starts = live.children_start
            for index in range(len(part.pointers)):
                start = starts.get(part.pointers[index].id, 0)
                assert as_held(whole.pointers[position(index)], start) == part.pointers[index]
            assert {p.id for p in whole.pointers if p.active} <= {p.id for p in part.pointers}
            count = len(part.pointers)
            changed: dict[int, ExecutionPointer] = {}
            for index in touched if count else ():
                index %= count
                for pointer in (part.pointers[index], whole.pointers[position(index)]):
                    pointer.attempt += 1
                    pointer.extensions[f"live-{self.ticks}"] = index
                    if end:
                        pointer.active = False
                        pointer.status = PointerStatus.COMPLETE
                changed[position(index)] = part.pointers[index]
            new = [ExecutionPointer(step_id=90 + i, start_time=self.at(0)) for i in range(added)]
            for copy in (part, whole):
                copy.pointers.extend(attrs.evolve(p, children=[]) for p in new)
            if container is not None and count and new:
                index = container % count
                for pointer in (part.pointers[index], whole.pointers[position(index)]):
                    pointer.children.extend(p.id for p in new)
                changed[position(index)] = part.pointers[index]
            names = {p.id for p in changed.values()} | {p.id for p in new}
            if live.whole:
                call(persistence.persist_workflow, part, changed_pointers=names)
            else:
                write = PointerWrite(
                    live.stored_pointers, sorted(changed.items()), part.pointers[count:], starts
                )
                call(persistence.persist_workflow, part, pointer_write=write)
            call(self.model.persist_workflow, whole)
            assert part.revision == whole.revision
            self.get(workflow_id)

        @rule(
            pair=copies,
            drop_last=st.booleans(),
            children=st.lists(st.sampled_from("pq"), max_size=3),
            data=strategies.json_values(max_leaves=4),
        )
        def rewrite(
            self,
            pair: tuple[WorkflowInstance, WorkflowInstance],
            drop_last: bool,
            children: list[str],
            data: Any,
        ) -> None:
            """A write naming no pointers (any caller but the executor): pointers may be
            removed, and ``children`` replaced, not only grown."""
            for copy in pair:
                if drop_last and copy.pointers:
                    copy.pointers.pop()
                if copy.pointers:
                    copy.pointers[0].children = list(children)
                copy.data = data
            self.write(pair)

        @rule(workflow_id=workflow_ids)
        def get(self, workflow_id: str) -> None:
            got, expected = self.both("get_workflow", workflow_id)
            assert got == expected
            got_errors, expected_errors = self.both("get_errors", workflow_id)
            assert list(got_errors) == list(expected_errors)

        @rule(as_of=offsets)
        def runnable(self, as_of: int) -> None:
            got, expected = self.both(
                "get_runnable_instances", _BASE_TIME + timedelta(seconds=as_of)
            )
            assert set(got) & self.mine["workflows"] == set(expected)

        @rule(
            status=st.none() | st.sampled_from(WorkflowStatus),
            skip=st.integers(min_value=0, max_value=3),
            take=st.integers(min_value=1, max_value=4),
        )
        def listing(self, status: WorkflowStatus | None, skip: int, take: int) -> None:
            got, expected = self.both(
                "list_workflows", definition_id=self.prefix, status=status, skip=skip, take=take
            )
            assert got.total == expected.total
            assert list(got.items) == list(expected.items)

        # -- events ------------------------------------------------------------------------
        @rule(
            target=event_ids,
            key=st.sampled_from("ab"),
            at=offsets,
            data=strategies.json_values(max_leaves=4),
        )
        def create_event(self, key: str, at: int, data: Any) -> str:
            event = Event(name=self.prefix, key=key, data=data, time=self.at(at))
            self.both("create_event", event)
            self.mine["events"].add(event.id)
            return event.id

        @rule(event_id=event_ids, processed=st.booleans())
        def mark(self, event_id: str, processed: bool) -> None:
            method = "mark_event_processed" if processed else "mark_event_unprocessed"
            self.both(method, event_id)
            got, expected = self.both("get_event", event_id)
            assert got == expected

        @rule(key=st.sampled_from("ab"), as_of=offsets)
        def find_events(self, key: str, as_of: int) -> None:
            moment = _BASE_TIME + timedelta(seconds=as_of)
            got, expected = self.both("get_events", self.prefix, key, moment)
            assert list(got) == list(expected)
            got, expected = self.both("get_runnable_events", moment)
            assert [i for i in got if i in self.mine["events"]] == list(expected)

        # -- subscriptions -----------------------------------------------------------------
        @rule(
            target=subscription_ids,
            workflow_id=workflow_ids,
            key=st.sampled_from("ab"),
            at=offsets,
        )
        def subscribe(self, workflow_id: str, key: str, at: int) -> str:
            subscription = make_subscription(
                workflow_id,
                event_name=self.prefix,
                event_key=key,
                subscribe_as_of=self.at(at),
                create_time=self.at(0),
            )
            self.both("create_subscription", subscription)
            return subscription.id

        @rule(subscription_id=subscription_ids)
        def terminate(self, subscription_id: str) -> None:
            self.both("terminate_subscription", subscription_id)
            got, expected = self.both("get_subscription", subscription_id)
            assert got == expected

        @rule(key=st.sampled_from("ab"), as_of=offsets)
        def find_subscriptions(self, key: str, as_of: int) -> None:
            moment = _BASE_TIME + timedelta(seconds=as_of)
            got, expected = self.both("get_subscriptions", self.prefix, key, moment)
            assert list(got) == list(expected)

        @invariant()
        def queries_agree(self) -> None:
            # Every query over everything this run stored, after every step: cheap, and it
            # catches order and filter mistakes the random queries above can miss.
            latest = _BASE_TIME + timedelta(days=1)
            for key in "ab":
                got, expected = self.both("get_subscriptions", self.prefix, key, latest)
                assert list(got) == list(expected)
            got, expected = self.both("list_workflows", definition_id=self.prefix)
            assert (got.total, list(got.items)) == (expected.total, list(expected.items))
            # Which events are unprocessed (a subscription written reopens those it matches).
            got, expected = self.both("get_runnable_events", latest)
            assert [i for i in got if i in self.mine["events"]] == list(expected)

    return PersistenceMachine
