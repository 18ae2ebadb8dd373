"""MemoryPersistence's one switch for its shortcuts: ``fast`` (default on) or
``WFE_MEMORY_FAST=0``."""

from __future__ import annotations

import pytest

from wfe_core.memory import MemoryPersistence
from wfe_core.memory._plugin import register_providers
from wfe_core.models import ExecutionPointer, PointerStatus, WorkflowInstance
from wfe_core.plugins import ProviderKind


def test_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WFE_MEMORY_FAST", raising=False)
    assert MemoryPersistence().fast is True


@pytest.mark.parametrize(("value", "fast"), [("0", False), (" 0 ", False), ("1", True)])
def test_the_environment_sets_the_default(
    monkeypatch: pytest.MonkeyPatch, value: str, fast: bool
) -> None:
    monkeypatch.setenv("WFE_MEMORY_FAST", value)
    assert MemoryPersistence().fast is fast
    # Also for the store a host builds by name (provider "memory").
    (spec,) = (s for s in register_providers() if s.kind == ProviderKind.PERSISTENCE)
    built = spec.factory(None, None)
    assert isinstance(built, MemoryPersistence)
    assert built.fast is fast


def test_the_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_MEMORY_FAST", "0")
    assert MemoryPersistence(fast=True).fast is True


@pytest.mark.anyio
@pytest.mark.parametrize("fast", [True, False])
async def test_off_every_write_is_stored_whole(fast: bool) -> None:
    """The observable difference: a write whose ``changed_pointers`` leaves out a changed
    pointer (breaking the caller's promise) loses that change with the shortcuts on, which
    the contract allows, and keeps it with them off."""
    async with MemoryPersistence(fast=fast, verify_changes=False) as store:
        instance = WorkflowInstance("flow", 1, pointers=[ExecutionPointer(step_id=0)])
        await store.create_workflow(instance)
        instance.pointers[0].status = PointerStatus.COMPLETE
        await store.persist_workflow(instance, changed_pointers=())
        stored = await store.get_workflow(instance.id)
    expected = PointerStatus.PENDING if fast else PointerStatus.COMPLETE
    assert stored.pointers[0].status == expected
    assert stored.revision == 2
