"""The host finds wfe-yaml through the ``wfe`` entry point: the YAML format by suffix and
the step types by name; third-party step types plug in the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from wfe_core import ExecutionResult
from wfe_core.models import WorkflowStatus
from wfe_core.plugins import StepExecutorSpec
from wfe_core.providers import StepExecutor
from wfe_host import WorkflowHost
from wfe_host.registry import PluginRegistry
from wfe_yaml import YamlWorkflowError, load_workflows_from_str

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from wfe_core import StepContext


def test_the_registry_finds_the_format_and_step_types() -> None:
    registry = PluginRegistry.from_environ({})
    assert registry.definition_format_for("ci.yml").name == "yaml"
    assert registry.definition_format_for("CI.YAML").plugin == "yaml"
    assert {e.name for e in registry.step_executors()} >= {"shell", "deno", "workflow"}
    assert registry.step_executor("deno").distribution == "wfe-yaml"


@pytest.mark.anyio
async def test_host_load_definitions(tmp_path: Path) -> None:
    file = tmp_path / "flow.yml"
    file.write_text(
        "workflow:\n  id: loaded\n  steps:\n"
        '    - {name: A, config: {run: \'echo "v=((v))" >> "$WFE_OUTPUT"\'}}\n'
    )
    async with WorkflowHost(registry=PluginRegistry.from_environ({})) as host:
        [definition] = host.load_definitions(file, {"v": "7"})
        assert definition.id == "loaded"
        workflow_id = await host.start_workflow("loaded")
        done = await host.wait_for_workflow(workflow_id, timeout=30)
    assert done.status == WorkflowStatus.COMPLETE
    assert done.data == {"v": "7"}


class Upper(StepExecutor):
    """A third-party step type: upper-cases ``config.text`` into output ``upper``."""

    def validate_config(self, config: Mapping[str, Any]) -> list[str]:
        return [] if isinstance(config.get("text"), str) else ["text: must be a string"]

    async def execute(self, config: Mapping[str, Any], ctx: StepContext) -> ExecutionResult:
        return ExecutionResult.next(output={"upper": str(config["text"]).upper()})


@pytest.mark.anyio
async def test_a_third_party_step_type() -> None:
    executors = {"upper": StepExecutorSpec("upper", Upper)}
    text = (
        "workflow:\n  id: up\n  inputs: {name: string}\n  steps:\n"
        "    - {name: U, type: upper, config: {text: 'hi ${{ inputs.name }}'}}\n"
    )
    [definition] = load_workflows_from_str(text, executors=executors)
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow("up", {"name": "ada"})
        done = await host.wait_for_workflow(workflow_id, timeout=30)
    assert done.data == {"name": "ada", "upper": "HI ADA"}
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(
            "workflow:\n  id: up\n  steps:\n    - {name: U, type: upper, config: {text: 3}}\n",
            executors=executors,
        )
    assert str(caught.value.problems[0]) == "<string>:4:45: step 'U': text: must be a string"


def test_the_json_schema_file_is_up_to_date() -> None:
    from pathlib import Path

    from wfe_yaml.schema import json_schema_text

    file = Path(__file__).resolve().parents[3] / "docs" / "wfe-yaml.schema.json"
    assert file.read_text() == json_schema_text(), (
        "regenerate docs/wfe-yaml.schema.json with "
        "`uv run python -c 'from wfe_yaml.schema import json_schema_text as t; "
        'open("docs/wfe-yaml.schema.json", "w").write(t())\'`'
    )


def test_the_examples_match_the_json_schema() -> None:
    """Runs where ``jsonschema`` is installed (``uv run --with jsonschema pytest ...``)."""
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    from ruamel.yaml import YAML

    from wfe_yaml import json_schema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = Path(__file__).resolve().parents[3] / "examples" / "pipelines"
    files = sorted(examples.glob("**/*.yaml"))
    assert files
    for file in files:
        document = YAML(typ="safe", pure=True).load(file.read_text())
        assert [e.message for e in validator.iter_errors(document)] == [], file
    bad = {"workflow": {"id": "x", "steps": [{"name": "a", "config": {"run": "x", "timout": 1}}]}}
    assert list(validator.iter_errors(bad))
