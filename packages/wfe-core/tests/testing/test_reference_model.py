"""The reference model is the persistence machine's oracle: it passes the suite's example
tests itself, shares no code with the product store, and the machine comparing a provider
with it finds a provider that breaks one rule."""

from __future__ import annotations

import ast
import inspect
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import attrs
import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from wfe_core.memory import MemoryPersistence
from wfe_core.testing.conformance import PersistenceSuite, persistence_state_machine, reference
from wfe_core.testing.conformance.reference import ReferencePersistence

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection

    from wfe_core.models import Page, WorkflowInstance


class TestReferencePersistence(PersistenceSuite):
    """The oracle passes every example test of the contract. (Its own machine run, against
    itself, checks the machine raises no false alarm on a store that keeps every rule.)"""

    __test__ = True

    @pytest.fixture
    async def persistence(self) -> AsyncIterator[ReferencePersistence]:
        async with ReferencePersistence() as provider:
            yield provider


def test_the_reference_model_shares_no_code_with_the_memory_store() -> None:
    tree = ast.parse(inspect.getsource(reference))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "wfe_core.serialization" in imported
    assert not [name for name in imported if name.startswith("wfe_core.memory")]


# -- providers that each break one rule of the contract ---------------------------------------
class IgnoresTheRevision(MemoryPersistence):
    """Last writer wins: a stale copy's write is stored instead of refused."""

    async def persist_workflow(self, instance: WorkflowInstance, **kwargs: Any) -> None:
        instance.revision = (await self.get_workflow(instance.id)).revision
        await super().persist_workflow(instance, **kwargs)


class ListsOldestFirst(MemoryPersistence):
    """``list_workflows`` pages in the wrong order."""

    async def list_workflows(self, **filters: Any) -> Page[WorkflowInstance]:
        page = await super().list_workflows(**filters)
        return attrs.evolve(page, items=list(reversed(page.items)))


class DropsUnnamedNewPointers(MemoryPersistence):
    """Takes ``changed_pointers`` as every pointer to store, so a new pointer the write does
    not name is lost (the contract: the ones past the stored count are stored too)."""

    async def persist_workflow(
        self,
        instance: WorkflowInstance,
        *,
        changed_pointers: Collection[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if changed_pointers is None:
            await super().persist_workflow(instance, **kwargs)
            return
        known = {pointer.id for pointer in (await self.get_workflow(instance.id)).pointers}
        kept = [p for p in instance.pointers if p.id in known or p.id in changed_pointers]
        written = attrs.evolve(instance, pointers=kept)
        await super().persist_workflow(written, changed_pointers=changed_pointers, **kwargs)
        instance.revision = written.revision


#: Enough runs to meet each bug, in a fixed order (derandomized), without shrinking (the
#: failure is the point, not its smallest form).
FINDING = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("broken", "caught_by"),
    [
        # The machine's own checks catch each one, not an assertion inside the store.
        (IgnoresTheRevision, {"write"}),
        (ListsOldestFirst, {"listing", "queries_agree"}),
        (DropsUnnamedNewPointers, {"get", "load", "queries_agree"}),
    ],
)
async def test_the_machine_finds_a_provider_breaking_one_rule(
    broken: type[MemoryPersistence], caught_by: set[str]
) -> None:
    async with broken() as provider:
        machine = persistence_state_machine(provider)

        def run() -> None:
            run_state_machine_as_test(machine, settings=FINDING)

        with pytest.raises(AssertionError) as caught:
            await anyio.to_thread.run_sync(run)
    assert caught.traceback[-1].name in caught_by, caught.getrepr(style="short")


@pytest.mark.anyio
async def test_the_same_machine_passes_the_intact_provider() -> None:
    """The control for the test above: with the same settings the unbroken store passes."""
    async with MemoryPersistence() as provider:
        machine = persistence_state_machine(provider)
        await anyio.to_thread.run_sync(lambda: run_state_machine_as_test(machine, settings=FINDING))
