"""``type: wait`` steps: a pipeline waits for an event (its data flows on as outputs) or, when
its timeout fires, runs its ``on_timeout:`` steps; the loader checks their config up front."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_core.testing import ManualClock
from wfe_host import WorkflowHost
from wfe_yaml import YamlWorkflowError, load_workflows_from_str
from wfe_yaml_support import pointers, result_of, run_yaml

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

PIPELINE = """
workflow:
  id: release
  inputs: {ticket: string}
  steps:
    - name: Build
      config: {run: 'echo "artifact=app-${{ inputs.ticket }}.tar" >> "$WFE_OUTPUT"'}
    - name: Wait for approval
      type: wait
      config:
        event: approved
        key: "${{ inputs.ticket }}"
        timeout: 2h
        output: approval
      on_timeout:
        - name: Escalate
          config: {run: 'echo "escalated ${{ inputs.ticket }}"'}
    - name: Deploy
      config: {run: 'echo "deploy ${{ outputs.artifact }} by ${{ outputs.approval.by }}"'}
      when: {field: outputs.approval, is_not_null: true}
    - name: Report
      config: {run: 'echo "done"'}
"""

#: Waits only for events published as of a date-time given as an input.
SINCE = """
workflow:
  id: since
  inputs: {order: string, since: string}
  steps:
    - name: Paid
      type: wait
      config: {event: paid, key: "${{ inputs.order }}", effective_date: "${{ inputs.since }}"}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def host(tmp_path: Path, clock: ManualClock) -> AsyncIterator[WorkflowHost]:
    sqlite = pytest.importorskip("wfe_sqlite")
    url = f"sqlite:///{tmp_path}/wfe.db"
    async with WorkflowHost(
        sqlite.SqlitePersistence(url), sqlite.SqliteLock(url), sqlite.SqliteQueue(url), clock=clock
    ) as running:
        for definition in [*load_workflows_from_str(PIPELINE), *load_workflows_from_str(SINCE)]:
            running.register(definition)
        yield running


async def waiting(host: WorkflowHost, workflow_id: str, step: str) -> None:
    """Return once step ``step`` of the workflow waits for its event."""
    with anyio.fail_after(20):
        while True:
            instance = await host.get_workflow(workflow_id)
            if any(
                p.step_name == step and p.status == PointerStatus.WAITING_FOR_EVENT
                for p in instance.pointers
            ):
                return
            await anyio.sleep(0.02)


async def test_the_event_data_flows_on_to_later_steps(host: WorkflowHost) -> None:
    workflow_id = await host.start_workflow("release", {"ticket": "T-7"})
    await waiting(host, workflow_id, "Wait for approval")
    await host.publish_event("approved", "T-7", {"by": "ada"})
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["approval"] == {"by": "ada"}
    assert result_of(instance, "Deploy")["stdout"] == "deploy app-T-7.tar by ada"
    assert result_of(instance, "Wait for approval") == {
        "event": "approved",
        "key": "T-7",
        "timed_out": False,
    }
    assert not pointers(instance, "Escalate")
    assert result_of(instance, "Report")["stdout"] == "done"


async def test_the_timeout_runs_the_timeout_steps_then_the_workflow_goes_on(
    host: WorkflowHost, clock: ManualClock
) -> None:
    workflow_id = await host.start_workflow("release", {"ticket": "T-8"})
    await waiting(host, workflow_id, "Wait for approval")
    # An event for another key does not end this wait.
    await host.publish_event("approved", "T-9", {"by": "bob"})
    clock.advance(timedelta(hours=2, seconds=1))
    host.scheduler.wake()
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.COMPLETE
    assert result_of(instance, "Escalate")["stdout"] == "escalated T-8"
    [wait] = pointers(instance, "Wait for approval")
    assert wait.outcome == "timeout"
    assert wait.extensions["result"]["timed_out"] is True
    assert instance.data["approval"] is None
    assert result_of(instance, "Deploy") == {"skipped": True}
    [escalate] = pointers(instance, "Escalate")
    [report] = pointers(instance, "Report")
    assert escalate.end_time is not None
    assert report.start_time is not None
    assert escalate.end_time <= report.start_time


async def test_an_event_published_before_the_wait_counts_and_a_mapping_merges(
    tmp_path: Path,
) -> None:
    """Without ``effective_date`` an earlier event is taken; without ``output`` the event's
    mapping becomes the outputs."""
    sqlite = pytest.importorskip("wfe_sqlite")
    url = f"sqlite:///{tmp_path}/wfe.db"
    [definition] = load_workflows_from_str(
        "workflow:\n  id: w\n  steps:\n"
        "    - name: Wait\n      type: wait\n      config: {event: paid, key: 42}\n"
        "    - name: Use\n"
        "      config: {run: 'echo \"${{ outputs.amount }} ${{ outputs.currency }}\"'}\n"
    )
    async with WorkflowHost(
        sqlite.SqlitePersistence(url), sqlite.SqliteLock(url), sqlite.SqliteQueue(url)
    ) as host:
        host.register(definition)
        await host.publish_event("paid", "42", {"amount": 10, "currency": "EUR"})
        workflow_id = await host.start_workflow("w")
        instance = await host.wait_for_workflow(workflow_id, timeout=30)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data == {"amount": 10, "currency": "EUR"}
    assert result_of(instance, "Use")["stdout"] == "10 EUR"


async def test_an_effective_date_skips_earlier_events(
    host: WorkflowHost, clock: ManualClock
) -> None:
    since = clock.now() + timedelta(hours=1)
    await host.publish_event("paid", "o-1", {"amount": 1})  # before the date: not this one
    workflow_id = await host.start_workflow("since", {"order": "o-1", "since": since.isoformat()})
    await waiting(host, workflow_id, "Paid")
    clock.advance(timedelta(hours=2))
    await host.publish_event("paid", "o-1", {"amount": 2})
    instance = await host.wait_for_workflow(workflow_id, timeout=30)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["amount"] == 2


async def test_a_bad_effective_date_from_the_data_fails_the_step(host: WorkflowHost) -> None:
    workflow_id = await host.start_workflow("since", {"order": "o-2", "since": "yesterday"})
    instance = await host.wait_for_workflow(workflow_id, timeout=30)
    assert instance.status == WorkflowStatus.FAILED
    [paid] = [p for p in instance.pointers if p.step_name == "Paid"]
    assert "effective_date: 'yesterday' is not a date-time" in (paid.error or "")


async def test_a_key_whose_data_is_not_set_fails_the_step() -> None:
    instance = await run_yaml(
        "workflow:\n  id: w\n  inputs: {order: string?}\n  steps:\n    - name: W\n"
        "      type: wait\n      config: {event: paid, key: '${{ inputs.order }}'}\n",
        timeout=30,
    )
    assert instance.status == WorkflowStatus.FAILED
    [wait] = [p for p in instance.pointers if p.step_name == "W"]
    assert "the event key is empty (None): the data it refers to is not set" in (wait.error or "")


def problems_of(text: str) -> list[str]:
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(text, file_name="flow.yaml")
    return [str(p) for p in caught.value.problems]


def wait_step(config: str, extra: str = "") -> str:
    return (
        "workflow:\n  id: x\n  inputs: {ticket: string}\n  steps:\n"
        f"    - name: W\n      type: wait\n      config: {config}\n{extra}"
    )


def test_unknown_keys_and_wrong_types_name_the_place() -> None:
    found = problems_of(wait_step("{event: approved, key: [1], timout: 5s}"))
    assert any(
        p.startswith("flow.yaml:7:43: unknown key 'timout' in step 'W' config") and "'timeout'" in p
        for p in found
    ), found
    assert "flow.yaml:7:38: step 'W': key: must be a string or a number" in found


def test_event_and_key_are_required() -> None:
    found = problems_of(wait_step("{timeout: 5s}"))
    assert "flow.yaml:7:15: step 'W': missing `event`: the name of the event to wait for" in found
    assert "flow.yaml:7:15: step 'W': missing `key`: the key of the event to wait for" in found


def test_a_bad_duration_or_date_is_refused_at_load() -> None:
    found = problems_of(
        wait_step("{event: e, key: k, timeout: 5 minutes, effective_date: next tuesday}")
    )
    assert any(
        p.startswith("flow.yaml:7:") and "timeout: bad duration '5 minutes'" in p for p in found
    )
    assert any(
        p.startswith("flow.yaml:7:") and "effective_date: 'next tuesday' is not a date-time" in p
        for p in found
    ), found


def test_the_timeout_is_known_at_load() -> None:
    found = problems_of(wait_step("{event: e, key: k, timeout: '${{ inputs.ticket }}'}"))
    assert (
        "flow.yaml:7:43: ${{ inputs.ticket }} is not allowed in `timeout`: only load-time "
        "values (${{ config.x }} or ((x))) are known here"
    ) in found


def test_key_and_effective_date_may_come_from_the_workflow_data() -> None:
    [definition] = load_workflows_from_str(
        wait_step(
            "{event: e, key: '${{ inputs.ticket }}', effective_date: '${{ inputs.since }}'}"
        ).replace("{ticket: string}", "{ticket: string, since: string}")
    )
    assert definition.step_by_external_id("W").metadata["kind"] == "wait"


def test_on_timeout_needs_a_wait_with_a_timeout() -> None:
    timeout_steps = "      on_timeout: {name: T, config: {run: echo late}}\n"
    [problem] = problems_of(wait_step("{event: e, key: k}", timeout_steps))
    assert problem == (
        "flow.yaml:8:7: step 'W': `on_timeout:` needs config.timeout (without it the wait "
        "never times out)"
    )
    shell = (
        "workflow:\n  id: x\n  steps:\n    - name: S\n      config: {run: echo}\n" + timeout_steps
    )
    [problem] = problems_of(shell)
    assert problem == (
        "flow.yaml:6:7: step 'S': `on_timeout:` applies to a step that waits (type wait), "
        "not to type 'shell'"
    )


def test_timeout_step_names_are_unique_in_the_workflow() -> None:
    found = problems_of(
        wait_step(
            "{event: e, key: k, timeout: 1m}", "      on_timeout: {name: W, config: {run: echo}}\n"
        )
    )
    assert any("duplicate step name 'W'" in p for p in found), found


def test_the_output_may_not_overwrite_a_declared_input() -> None:
    [problem] = problems_of(wait_step("{event: e, key: k, output: ticket}"))
    assert problem == (
        "flow.yaml:5:7: step 'W' stores its result as 'ticket', the name of a declared input "
        "of workflow 'x'; an output may not overwrite an input"
    )
