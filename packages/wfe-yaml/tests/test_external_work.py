"""``type: approval`` and ``type: activity`` steps: a pipeline asks a person (assignee,
options, escalation) or an external worker, through the host's user-task and activity APIs,
on SQLite; the loader checks their config up front."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core.models import (
    OpenUserAction,
    PointerStatus,
    UserActionOption,
    WorkflowInstance,
    WorkflowStatus,
)
from wfe_core.testing import ManualClock
from wfe_host import WorkflowHost
from wfe_yaml import YamlWorkflowError, load_workflows_from_str
from wfe_yaml_support import result_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

PIPELINES = """
workflows:
  - id: release
    inputs: {tag: string}
    steps:
      - name: Approve
        type: approval
        config:
          prompt: "Release ${{ inputs.tag }}?"
          assignee: release-managers
          options: [approve, {value: reject, label: Reject it}]
          escalation:
            - {after: 1h, assignee: cto}
          output: decision
      - name: Deploy
        when: {field: outputs.decision, equals: approve}
        config: {run: 'echo "deploying ${{ inputs.tag }}"'}
  - id: image
    inputs: {tag: string}
    steps:
      - name: Build image
        type: activity
        config:
          activity: build-image
          parameters: {tag: "${{ inputs.tag }}", arch: [amd64, arm64]}
          timeout: 1h
          output: image
      - name: Publish
        config: {run: 'echo "publishing ${{ outputs.image.digest }}"'}
  - id: gated
    inputs: {tag: string}
    steps:
      - name: Approve
        type: approval
        config:
          prompt: "Ship ${{ inputs.tag }}?"
          assignee: dev
          options:
            - value: approve
              steps:
                - name: Ship
                  config: {run: 'echo "shipping ${{ inputs.tag }}"'}
            - value: reject
              label: Reject it
              steps:
                - name: Roll back
                  config: {run: 'echo "rolling back ${{ inputs.tag }}"'}
            - hold
          escalation:
            - after: 1h
              assignee: lead
              steps:
                - name: Remind
                  config: {run: 'echo "still no answer for ${{ inputs.tag }}"'}
          output: decision
      - name: After
        config: {run: 'echo "after ${{ outputs.decision }}"'}
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
        for definition in load_workflows_from_str(PIPELINES):
            running.register(definition)
        yield running


async def open_task(host: WorkflowHost, workflow_id: str, assigned_to: str) -> OpenUserAction:
    """The workflow's open user task once it is assigned to ``assigned_to``."""
    with anyio.fail_after(20):
        while True:
            found = await host.get_open_user_actions(workflow_id, assigned_to)
            if found:
                return found[0]
            await anyio.sleep(0.02)


async def test_an_approval_is_asked_escalated_and_answered(
    host: WorkflowHost, clock: ManualClock
) -> None:
    workflow_id = await host.start_workflow("release", {"tag": "1.2"})
    task = await open_task(host, workflow_id, "release-managers")
    assert task.prompt == "Release 1.2?"
    assert task.options == (
        UserActionOption("approve", "approve"),
        UserActionOption("reject", "Reject it"),
    )
    # Nobody answered within the hour: the task goes to the escalation's assignee.
    clock.advance(timedelta(hours=1, seconds=1))
    host.scheduler.wake()
    task = await open_task(host, workflow_id, "cto")
    await host.publish_user_action(task.key, "ada", "approve")
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["decision"] == "approve"
    assert result_of(instance, "Approve") == {"answer": "approve", "answered_by": "ada"}
    assert result_of(instance, "Deploy")["stdout"] == "deploying 1.2"


async def test_a_rejection_flows_into_later_conditions(host: WorkflowHost) -> None:
    workflow_id = await host.start_workflow("release", {"tag": "1.3"})
    task = await open_task(host, workflow_id, "release-managers")
    await host.publish_user_action(task.key, "bob", "reject")
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["decision"] == "reject"
    assert result_of(instance, "Deploy") == {"skipped": True}


async def test_an_activity_is_done_by_an_external_worker(host: WorkflowHost) -> None:
    workflow_id = await host.start_workflow("image", {"tag": "1.2"})
    pending = await host.get_pending_activity("build-image", "worker-1", timeout=20)
    assert pending is not None
    assert pending.workflow_id == workflow_id
    assert pending.parameters == {"tag": "1.2", "arch": ["amd64", "arm64"]}
    await host.submit_activity_success(pending.token, {"digest": "sha256:abc"})
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["image"] == {"digest": "sha256:abc"}
    assert result_of(instance, "Publish")["stdout"] == "publishing sha256:abc"


async def test_a_failed_activity_fails_the_step(host: WorkflowHost) -> None:
    workflow_id = await host.start_workflow("image", {"tag": "1.4"})
    pending = await host.get_pending_activity("build-image", "worker-1", timeout=20)
    assert pending is not None
    await host.submit_activity_failure(pending.token, "no space left on device")
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.FAILED
    [failed] = [p for p in instance.pointers if p.step_name == "Build image"]
    assert "ActivityFailedError" in (failed.error or "")
    assert "no space left on device" in (failed.error or "")
    assert not [p for p in instance.pointers if p.step_name == "Publish"]


def problems_of(text: str) -> list[str]:
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(text, file_name="flow.yaml")
    return [str(p) for p in caught.value.problems]


def step_of(type_name: str, config: str) -> str:
    return (
        "workflow:\n  id: x\n  steps:\n"
        f"    - name: S\n      type: {type_name}\n      config:\n{config}"
    )


def test_an_approval_needs_a_prompt_and_answers() -> None:
    found = problems_of(step_of("approval", "        assignee: [a]\n        options: []\n"))
    assert "flow.yaml:7:19: step 'S': assignee: must be a name" in found
    assert (
        "flow.yaml:8:18: step 'S': options: must be a non-empty list of answers "
        "(values or {value, label})"
    ) in found
    assert "flow.yaml:7:9: step 'S': missing `prompt`: the question to ask" in found


def test_approval_answers_and_escalations_are_checked() -> None:
    found = problems_of(
        step_of(
            "approval",
            "        prompt: Go?\n"
            "        options: [yes, yes, {value: no, lable: No way}, {label: x}]\n"
            "        escalation:\n"
            "          - {after: 1 hour}\n"
            "          - {assignee: cto}\n"
            "          - {after: 5m, asignee: cto}\n"
            "        prompts: typo\n",
        )
    )
    assert any(
        p.startswith("flow.yaml:13:9: unknown key 'prompts'") and "'prompt'" in p for p in found
    ), found
    at_options = [p for p in found if p.startswith("flow.yaml:8:18: step 'S': options: ")]
    assert [p.split("options: ", 1)[1] for p in at_options] == [
        "answer 'yes' is given twice",
        "answer 3: unknown key 'lable' (value, label)",
        "answer 4 must be a string, number or boolean",
    ]
    at_escalation = [p for p in found if p.startswith("flow.yaml:10:11: step 'S': escalation: ")]
    assert [p.split("escalation: ", 1)[1] for p in at_escalation] == [
        "entry 1: after: bad duration '1 hour': expected e.g. 250ms, 5s, 1.5s, 2m, 1h30m",
        "entry 2: missing `after` (a duration)",
        "entry 3: unknown key 'asignee' (after, assignee)",
    ]


def test_an_activity_needs_a_name_and_a_duration() -> None:
    found = problems_of(step_of("activity", "        timeout: soon\n        output: ''\n"))
    assert "flow.yaml:7:9: step 'S': missing `activity`: the name workers take the activity by" in (
        found
    )
    assert any(
        p.startswith("flow.yaml:7:18: step 'S': timeout: bad duration 'soon'") for p in found
    )
    assert "flow.yaml:8:17: step 'S': output: must be a name" in found


def test_the_activity_name_is_known_at_load() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  inputs: {kind: string}\n  steps:\n    - name: S\n"
        "      type: activity\n      config: {activity: '${{ inputs.kind }}'}\n"
    )
    assert any(
        p.startswith("flow.yaml:7:") and "is not allowed in `activity`" in p for p in found
    ), found


# -- an approval's option and escalation steps ---------------------------------------------------
def ran(instance: WorkflowInstance) -> list[str]:
    """The visible YAML steps that completed, in the order they started (the test clock
    stands still while they run, so their times do not tell)."""
    return [
        p.step_name or ""
        for p in instance.pointers
        if p.status == PointerStatus.COMPLETE
        and p.step_name in {"Approve", "Ship", "Roll back", "Remind", "After"}
    ]


async def test_an_options_steps_run_when_it_is_chosen_and_an_escalations_when_it_fires(
    host: WorkflowHost, clock: ManualClock
) -> None:
    workflow_id = await host.start_workflow("gated", {"tag": "2.0"})
    await open_task(host, workflow_id, "dev")
    clock.advance(timedelta(hours=1, seconds=1))
    host.scheduler.wake()
    task = await open_task(host, workflow_id, "lead")  # open again once Remind ran
    assert result_of(await host.get_workflow(workflow_id), "Remind")["stdout"] == (
        "still no answer for 2.0"
    )
    clock.advance(timedelta(seconds=1))
    await host.publish_user_action(task.key, "ada", "approve")
    instance = await host.wait_for_workflow(workflow_id, timeout=30)

    assert instance.status == WorkflowStatus.COMPLETE
    assert ran(instance) == ["Approve", "Remind", "Ship", "After"]
    assert result_of(instance, "Ship")["stdout"] == "shipping 2.0"
    assert result_of(instance, "Approve") == {"answer": "approve", "answered_by": "ada"}
    assert result_of(instance, "After")["stdout"] == "after approve"


async def test_another_option_runs_its_own_steps_and_one_without_steps_none(
    host: WorkflowHost,
) -> None:
    rejected = await host.start_workflow("gated", {"tag": "2.1"})
    held = await host.start_workflow("gated", {"tag": "2.2"})
    await host.publish_user_action((await open_task(host, rejected, "dev")).key, "bob", "reject")
    await host.publish_user_action((await open_task(host, held, "dev")).key, "bob", "hold")
    rejected_instance = await host.wait_for_workflow(rejected, timeout=30)
    held_instance = await host.wait_for_workflow(held, timeout=30)

    assert ran(rejected_instance) == ["Approve", "Roll back", "After"]
    assert result_of(rejected_instance, "Roll back")["stdout"] == "rolling back 2.1"
    assert result_of(rejected_instance, "After")["stdout"] == "after reject"
    assert ran(held_instance) == ["Approve", "After"]
    assert result_of(held_instance, "After")["stdout"] == "after hold"


def test_branch_steps_are_checked_where_they_are_written() -> None:
    found = problems_of(
        step_of(
            "approval",
            "        prompt: Go?\n"
            "        options:\n"
            "          - value: yes\n"
            "            steps: []\n"
            "          - value: no\n"
            "            steps:\n"
            "              - name: Undo\n"
            "                config: {run: 'echo ${{ outputs.nope }}', shel: x}\n"
            "        escalation:\n"
            "          - after: 1h\n"
            "            steps:\n"
            "              - name: S\n"
            "                config: {run: 'true'}\n",
        )
    )
    assert "flow.yaml:10:20: `steps:` must be a step or a list of steps" in found, found
    assert (
        "flow.yaml:14:59: unknown key 'shel' in step 'Undo' config (did you mean 'shell'?)"
    ) in found
    # Branch steps are steps of the workflow: their names are unique like any other.
    assert "flow.yaml:18:17: duplicate step name 'S' in workflow 'x' (first at flow.yaml:4:7)" in (
        found
    )
    assert len(found) == 3, found
