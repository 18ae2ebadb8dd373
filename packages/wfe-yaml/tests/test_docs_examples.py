"""The YAML examples of the step-type sections of docs/yaml.md load, and match the JSON
schema editors use."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe_yaml import load_workflows_from_str

DOCS = Path(__file__).resolve().parents[3] / "docs" / "yaml.md"


def example_of(section: str) -> str:
    """The first YAML example of the ``### <section>`` section of docs/yaml.md."""
    text = DOCS.read_text()
    body = text.split(f"\n### {section}\n", 1)[1].split("\n### ", 1)[0]
    return body.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize(
    ("section", "step", "misspelt"),
    [
        ("wait", "Wait for approval", "timout"),
        ("approval", "Approve", "optons"),
        ("activity", "Build image", "paramters"),
    ],
)
def test_the_documented_example_loads_and_matches_the_json_schema(
    section: str, step: str, misspelt: str
) -> None:
    example = example_of(section)
    [definition] = load_workflows_from_str(example)
    assert definition.step_by_external_id(step).metadata["kind"] == section
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    from wfe_yaml import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    document = YAML(typ="safe", pure=True).load(example)
    assert [e.message for e in validator.iter_errors(document)] == []
    # The schema knows the type's keys: a misspelt one is an error for editors too.
    [documented] = [s for s in document["workflow"]["steps"] if s["name"] == step]
    documented["config"][misspelt] = "x"
    assert list(validator.iter_errors(document))


def test_the_approval_example_with_branch_steps_loads_and_matches_the_json_schema() -> None:
    text = DOCS.read_text()
    body = text.split("\n### approval\n", 1)[1].split("\n### ", 1)[0]
    example = body.split("```yaml\n")[2].split("```", 1)[0]
    [definition] = load_workflows_from_str(example)
    names = {step.name for step in definition.steps}
    assert {"Deploy it", "Tell the team", "Remind"} <= names
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    from wfe_yaml import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    document = YAML(typ="safe", pure=True).load(example)
    assert [e.message for e in validator.iter_errors(document)] == []
    # A step inside an option is a step to the schema too: a misspelt key is an error.
    [approve] = document["workflow"]["steps"]
    approve["config"]["options"][0]["steps"][0]["confg"] = {}
    assert list(validator.iter_errors(document))
