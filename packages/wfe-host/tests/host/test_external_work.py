"""Activities and user tasks beyond the shared scenarios: a client serving a host's
activities, clear errors for bad calls and bad tokens, a store without the capability,
user tasks whose options have no branch, and escalations without an action."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from wfe_core import WorkflowBuilder, WorkflowStatus
from wfe_core.errors import (
    ActivityTokenError,
    DefinitionError,
    UnsupportedOperationError,
    UserActionError,
)
from wfe_core.memory import MemoryLifecycle, MemoryLock, MemoryPersistence, MemoryQueue
from wfe_core.providers import PersistenceProvider
from wfe_core.providers import capabilities as cap
from wfe_core.testing.conformance.reference import ReferencePersistence
from wfe_host import WorkflowClient, WorkflowHost

pytestmark = pytest.mark.anyio

TIMEOUT = 30


def _activity_flow(name: str = "charge") -> Any:
    return (
        WorkflowBuilder(dict)
        .activity(name, parameters=lambda data: {"amount": data["amount"]})
        .output(receipt=lambda step: step.result)
        .build(f"flow-{name}")
    )


async def test_a_client_without_workers_serves_a_hosts_activities() -> None:
    providers: dict[str, Any] = {
        "persistence": MemoryPersistence(),
        "lock": MemoryLock(),
        "queue": MemoryQueue(),
        "lifecycle": MemoryLifecycle(),
    }
    definition = _activity_flow()
    async with WorkflowHost(**providers) as host, WorkflowClient(**providers) as client:
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, {"amount": 5})
        with anyio.fail_after(TIMEOUT):
            pending = await client.get_pending_activity("charge", "remote", timeout=TIMEOUT)
            assert pending is not None
            assert pending.parameters == {"amount": 5}
            await client.submit_activity_success(pending.token, {"id": "r-5"})
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["receipt"] == {"id": "r-5"}


async def test_an_activity_named_per_workflow() -> None:
    # workflow-core's ActivityScenario2: a compound name from the context.
    definition = (
        WorkflowBuilder(dict)
        .activity(lambda data, ctx: f"act-1-{ctx.workflow_id}", parameters={"value1": "a"})
        .output(out=lambda step: step.result)
        .build("per-workflow")
    )
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, {})
        with anyio.fail_after(TIMEOUT):
            pending = await host.get_pending_activity(f"act-1-{workflow_id}", "w", timeout=TIMEOUT)
            assert pending is not None
            await host.submit_activity_success(pending.token, pending.parameters["value1"] + "1")
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert instance.data["out"] == "a1"


async def test_nothing_pending_returns_none_after_the_wait() -> None:
    async with WorkflowHost() as host:
        started = anyio.current_time()
        assert await host.get_pending_activity("nothing", "w", timeout=0.3) is None
        assert anyio.current_time() - started >= 0.3
        assert await host.get_pending_activity("nothing", "w") is None


@pytest.mark.parametrize("token", ["", "abc", "x" * 65, "0" * 32 + "." + "g" * 32])
async def test_a_malformed_token_is_refused_with_what_was_expected(token: str) -> None:
    async with WorkflowHost() as host:
        for call in (
            host.submit_activity_success(token, 1),
            host.submit_activity_failure(token, "x"),
            host.release_activity(token),
        ):
            with pytest.raises(ActivityTokenError, match="malformed activity token"):
                await call


async def test_an_unknown_token_is_refused() -> None:
    async with WorkflowHost() as host:
        with pytest.raises(ActivityTokenError, match="no activity has the token"):
            await host.submit_activity_success("0" * 32 + "." + "1" * 32, None)


async def test_bad_arguments_are_refused() -> None:
    async with WorkflowHost() as host:
        with pytest.raises(ValueError, match="worker_id"):
            await host.get_pending_activity("charge", "")
        with pytest.raises(ValueError, match="lease"):
            await host.get_pending_activity("charge", "w", lease=0)
        with pytest.raises(ValueError, match="timeout"):
            await host.get_pending_activity("charge", "w", timeout=-1)


class _WithoutExternalWork(ReferencePersistence):
    """A store as a third party wrote it before external work existed."""

    capabilities = frozenset({cap.FENCING})


async def test_a_store_without_the_capability_says_so_and_runs_the_rest() -> None:
    store = _WithoutExternalWork()
    definition = WorkflowBuilder(dict).then_fn(lambda ctx: None).build("plain")
    async with WorkflowHost(persistence=store) as host:
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, {})
        assert (await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)).status == (
            WorkflowStatus.COMPLETE
        )
        with pytest.raises(UnsupportedOperationError, match="external-work"):
            await host.get_pending_activity("charge", "w")
        with pytest.raises(UnsupportedOperationError, match="external-work"):
            await host.get_open_user_actions()


async def test_the_contracts_defaults_name_the_missing_capability() -> None:
    store = ReferencePersistence()
    with pytest.raises(UnsupportedOperationError, match=r"claim_subscription.*external-work"):
        await PersistenceProvider.claim_subscription(
            store, "x", token="t", worker_id="w", expires_at=None, as_of=None
        )  # type: ignore[arg-type]
    with pytest.raises(UnsupportedOperationError, match="get_open_subscriptions"):
        await PersistenceProvider.get_open_subscriptions(store, "x")
    with pytest.raises(UnsupportedOperationError, match="release_subscription_claim"):
        await PersistenceProvider.release_subscription_claim(store, "x", "t")


async def test_options_without_branches_end_the_task_with_the_value_as_outcome() -> None:
    definition = (
        WorkflowBuilder(dict)
        .user_task("Pick a number")
        .with_option(1, "One")
        .with_option(2)
        .output(picked=lambda step: "done")
        .build("pick")
    )
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, {})
        with anyio.fail_after(TIMEOUT):
            actions = await _open(host, workflow_id)
            assert actions[0].assigned_to is None
            assert [(o.value, o.label) for o in actions[0].options] == [(1, "One"), (2, "2")]
            with pytest.raises(UserActionError, match="options: 1, 2"):
                await host.publish_user_action(actions[0].key, "ann", "2")
            await host.publish_user_action(actions[0].key, "ann", 2)
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert instance.status == WorkflowStatus.COMPLETE
    task = instance.pointers[0]
    assert task.outcome == 2
    assert task.extensions["wfe.user_task"]["answered_by"] == "ann"


async def test_escalations_reassign_in_turn_without_an_action() -> None:
    definition = (
        WorkflowBuilder(dict)
        .user_task("Approve?", assign_to="ann")
        .with_option("ok")
        .with_escalation(after=0.2, assign_to="bob")
        .with_escalation(after=lambda data: timedelta(seconds=0.2), assign_to="cy")
        .build("escalating")
    )
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow(definition.id, {})
        seen: list[str | None] = []
        with anyio.fail_after(TIMEOUT):
            while not seen or seen[-1] != "cy":
                actions = await host.get_open_user_actions(workflow_id)
                if actions and (not seen or seen[-1] != actions[0].assigned_to):
                    seen.append(actions[0].assigned_to)
                await anyio.sleep(0.02)
            await host.publish_user_action(actions[0].key, "cy", "ok")
            instance = await host.wait_for_workflow(workflow_id, timeout=TIMEOUT)
    assert seen == ["ann", "bob", "cy"]
    assert instance.status == WorkflowStatus.COMPLETE


async def _open(host: WorkflowHost, workflow_id: str) -> list[Any]:
    while True:
        actions = await host.get_open_user_actions(workflow_id)
        if actions:
            return actions
        await anyio.sleep(0.02)


def test_builder_mistakes_are_reported_at_build() -> None:
    with pytest.raises(DefinitionError) as caught:
        (
            WorkflowBuilder(dict)
            .start_with(lambda ctx: None)
            .with_option("x")
            .user_task("Q?")
            .with_option("yes")
            .with_option("yes")
            .activity("")
            .with_escalation(after=1)
            .build("bad")
        )
    message = str(caught.value)
    assert ".with_option() must follow .user_task()" in message
    assert "has the option 'yes' twice" in message
    assert "activity name must be a non-empty string or fn(data)" in message
    assert ".with_escalation() must follow .user_task()" in message
