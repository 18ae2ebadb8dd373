"""``type: workflow`` steps: children with typed inputs and outputs, failure propagation."""

from __future__ import annotations

import pytest

from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_host import WorkflowHost
from wfe_yaml import load_workflows_from_str
from wfe_yaml_support import pointers, run_yaml

pytestmark = pytest.mark.anyio

FILE = """
workflows:
  - id: pipeline
    inputs: {tag: string, fail: boolean?}
    outputs: {url: string}
    steps:
      - name: Version
        config: {run: 'echo "version=${{ inputs.tag }}.10" >> "$WFE_OUTPUT"'}
      - name: Release
        type: workflow
        config:
          workflow: release
          inputs: {tag: "${{ outputs.version }}", fail: "${{ inputs.fail }}"}
      - name: After
        config: {run: 'echo "released at $WFE_DATA_URL"'}
  - id: release
    inputs: {tag: string, fail: boolean?}
    outputs: {url: string}
    steps:
      - name: Check
        when: {field: inputs.fail, equals: true}
        config: {run: 'echo "release refused" >&2; exit 4'}
      - name: Publish
        config: {run: 'echo "url=https://example.invalid/${{ inputs.tag }}" >> "$WFE_OUTPUT"'}
"""


async def test_child_outputs_flow_back() -> None:
    instance = await run_yaml(FILE, {"tag": "1"})
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data == {
        "tag": "1",
        "version": "1.10",
        "url": "https://example.invalid/1.10",
    }
    [after] = pointers(instance, "After")
    assert after.extensions["result"]["stdout"] == "released at https://example.invalid/1.10"


async def test_child_failure_fails_the_step_and_the_parent() -> None:
    definitions = load_workflows_from_str(FILE)
    async with WorkflowHost() as host:
        for definition in definitions:
            host.register(definition)
        workflow_id = await host.start_workflow("pipeline", {"tag": "2", "fail": "true"})
        parent = await host.wait_for_workflow(workflow_id, timeout=60)
        assert parent.status == WorkflowStatus.FAILED
        [release] = pointers(parent, "Release")
        assert release.status == PointerStatus.FAILED
        assert "ChildWorkflowError" in (release.error or "")
        assert "exited with code 4: release refused" in (release.error or "")
        children = await host.list_workflows(definition_id="release")
        [child] = children.items
        assert child.status == WorkflowStatus.FAILED
        assert child.parent_workflow_id == workflow_id
        assert not pointers(parent, "After")


async def test_a_registered_workflow_from_another_file() -> None:
    [child] = load_workflows_from_str(
        "workflow:\n  id: greet\n  inputs: {who: string}\n  steps:\n    - name: Hi\n"
        '      config: {run: \'echo "greeting=hi ${{ inputs.who }}" >> "$WFE_OUTPUT"\'}\n'
    )
    [parent] = load_workflows_from_str(
        "workflow:\n  id: main\n  steps:\n    - name: Call\n      type: workflow\n"
        "      config: {workflow: greet, version: 1, inputs: {who: ada}, outputs: [greeting]}\n"
    )
    async with WorkflowHost() as host:
        host.register(child)
        host.register(parent)
        workflow_id = await host.start_workflow("main")
        done = await host.wait_for_workflow(workflow_id, timeout=60)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data == {"greeting": "hi ada"}


async def test_an_unknown_child_fails_the_step() -> None:
    instance = await run_yaml(
        "workflow:\n  id: main\n  steps:\n    - name: Call\n      type: workflow\n"
        "      config: {workflow: nowhere}\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    [call] = pointers(instance, "Call")
    assert "nowhere" in (call.error or "")
