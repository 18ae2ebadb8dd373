"""Loading and validating YAML workflows: every problem with file:line:column."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.models import ErrorBehaviorKind
from wfe_yaml import YamlWorkflowError, load_workflow, load_workflows_from_str, validate_workflow

if TYPE_CHECKING:
    from pathlib import Path


def problems_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(text, file_name="flow.yaml", **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def test_a_minimal_workflow_loads() -> None:
    [definition] = load_workflows_from_str(
        "workflow:\n  id: hello\n  steps:\n    - name: Say\n      config: {run: echo hi}\n"
    )
    assert definition.id == "hello"
    assert definition.version == 1
    step = definition.step_by_external_id("Say")
    assert step.metadata["kind"] == "shell"
    assert step.metadata["line"] == 4


def test_unknown_key_names_position_and_suggests() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  steps:\n    - name: A\n      confg: {run: echo}\n"
        "      config: {run: echo, timout: 5s}\n"
    )
    assert "flow.yaml:5:7: unknown key 'confg' in step (did you mean 'config'?)" in found
    assert any(
        p.startswith("flow.yaml:6:") and "unknown key 'timout'" in p and "'timeout'" in p
        for p in found
    )


def test_missing_run() -> None:
    [problem] = problems_of("workflow:\n  id: x\n  steps:\n    - name: A\n      config: {}\n")
    assert problem.startswith("flow.yaml:5:15:")
    assert "missing `run`" in problem


def test_explicit_shell_without_run() -> None:
    [problem] = problems_of(
        "workflow:\n  id: x\n  steps:\n    - name: A\n      type: shell\n"
        "      config: {shell: sh}\n"
    )
    assert "missing `run`" in problem


def test_duplicate_step_names_anywhere() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  steps:\n    - name: A\n      config: {run: echo}\n"
        "    - name: B\n      parallel:\n        - name: A\n          config: {run: echo}\n"
    )
    assert found == [
        "flow.yaml:8:11: duplicate step name 'A' in workflow 'x' (first at flow.yaml:4:7)"
    ]


def test_unknown_step_type_lists_installed_ones() -> None:
    [problem] = problems_of(
        "workflow:\n  id: x\n  steps:\n    - name: A\n      type: dno\n"
        "      config: {script: '1'}\n"
    )
    assert problem.startswith("flow.yaml:5:13: step 'A': unknown step type 'dno'")
    assert "did you mean 'deno'?" in problem
    assert "installed: activity, approval, deno, shell, wait, workflow" in problem


def test_circular_sub_workflows() -> None:
    found = problems_of(
        "workflows:\n"
        "  - id: a\n    steps:\n      - name: CallB\n        type: workflow\n"
        "        config: {workflow: b}\n"
        "  - id: b\n    steps:\n      - name: CallA\n        type: workflow\n"
        "        config: {workflow: a}\n"
    )
    assert found == ["flow.yaml:9:9: circular sub-workflow reference: a v1 -> b v1 -> a v1"]


def test_self_reference_is_circular() -> None:
    found = problems_of(
        "workflow:\n  id: a\n  steps:\n    - name: Again\n      type: workflow\n"
        "      config: {workflow: a}\n"
    )
    assert found == ["flow.yaml:4:7: circular sub-workflow reference: a v1 -> a v1"]


def test_bad_durations() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  error_behavior: {type: retry, interval: 5 seconds}\n"
        "  steps:\n    - name: A\n      config: {run: echo, timeout: 10}\n"
    )
    assert any(p.startswith("flow.yaml:3:43:") and "bad duration '5 seconds'" in p for p in found)
    assert any(p.startswith("flow.yaml:6:36:") and "write 10s for seconds" in p for p in found)


def test_undeclared_input_in_condition() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  inputs: {branch: string}\n  steps:\n    - name: A\n"
        "      when: {field: inputs.brnch, equals: main}\n      config: {run: echo}\n"
    )
    assert len(found) == 1
    assert found[0].startswith("flow.yaml:6:21: undeclared input 'brnch'")
    assert "did you mean 'branch'?" in found[0]


def test_undeclared_input_in_interpolation() -> None:
    [problem] = problems_of(
        "workflow:\n  id: x\n  steps:\n    - name: A\n"
        "      config: {run: 'echo ${{ inputs.who }}'}\n"
    )
    assert "undeclared input 'who' (declared inputs: none)" in problem


def test_every_problem_is_reported_at_once() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  versoin: 2\n  steps:\n"
        "    - name: A\n      config: {run: echo, timeout: soon}\n"
        "    - name: A\n      type: nope\n"
        "    - name: C\n      when: {field: inputs.q, equals: 1}\n      config: {run: echo}\n"
    )
    assert [p.split(":")[1] for p in found] == ["3", "6", "7", "8", "10"], found
    assert "duplicate step name 'A'" in found[2]
    assert "unknown step type 'nope'" in found[3]


def test_yaml_syntax_errors_have_positions() -> None:
    [problem] = problems_of("workflow:\n  id: x\n  steps: [\n")
    assert problem.startswith("flow.yaml:4:1: invalid YAML")


def test_duplicate_keys_are_an_error() -> None:
    [problem] = problems_of("workflow:\n  id: x\n  id: y\n  steps: []\n")
    assert problem.startswith("flow.yaml:3:3: invalid YAML")


def test_anchors_merge_keys_and_template_holders() -> None:
    [definition] = load_workflows_from_str(
        """
_templates:
  shell: &shell
    shell: sh
    timeout: 5s
    env: {A: "1"}
  step: &step
    error_behavior: {type: retry, interval: 1s, max_retries: 2}
workflow:
  id: merged
  steps:
    - <<: *step
      name: First
      config:
        <<: *shell
        run: echo one
    - name: Second
      config: {<<: *shell, timeout: 1s, run: echo two}
"""
    )
    first = definition.step_by_external_id("First")
    plan = first.body.plan  # type: ignore[union-attr]
    assert dict(plan.config) == {
        "shell": "sh",
        "timeout": "5s",
        "env": {"A": "1"},
        "run": "echo one",
    }
    assert first.error_behavior is not None
    assert first.error_behavior.kind == ErrorBehaviorKind.RETRY
    assert first.error_behavior.max_retries == 2
    second = definition.step_by_external_id("Second").body.plan  # type: ignore[union-attr]
    assert second.config["timeout"] == "1s"


def test_load_time_values() -> None:
    text = (
        "workflow:\n  id: deploy-((env))\n  steps:\n    - name: A\n"
        "      config: {run: 'echo ((env))', timeout: '${{ config.limit }}'}\n"
    )
    [definition] = load_workflows_from_str(text, {"env": "prod", "limit": "3s"})
    assert definition.id == "deploy-prod"
    plan = definition.step_by_external_id("A").body.plan  # type: ignore[union-attr]
    # In shell code the value travels as an environment variable, never as code.
    assert plan.config["run"] == 'echo "${WFE_SET_0_ENV}"'
    assert plan.config["env"] == {"WFE_SET_0_ENV": "prod"}
    assert plan.config["timeout"] == "3s"
    found = problems_of(text, config={"env": "prod"})
    assert found == [
        "flow.yaml:5:46: load-time value 'limit' is not set (pass --set limit=...; given: env)"
    ]


def test_runtime_values_not_allowed_in_static_fields() -> None:
    found = problems_of(
        "workflow:\n  id: x\n  inputs: {t: string}\n  steps:\n    - name: A\n"
        "      config: {run: echo, timeout: '${{ inputs.t }}'}\n"
    )
    assert any("not allowed in `timeout`" in p for p in found), found


def test_deno_scripts_take_no_references() -> None:
    [problem] = problems_of(
        "workflow:\n  id: x\n  inputs: {t: string}\n  steps:\n    - name: A\n"
        "      type: deno\n      config: {script: 'console.log(\"${{ inputs.t }}\")'}\n"
    )
    assert "Wfe.getData()" in problem


def test_include_and_same_file_children(tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text(
        "include: [main.yaml]\n"  # a cycle of includes is harmless
        "workflow:\n  id: release\n  inputs: {tag: string}\n  outputs: {url: string}\n"
        "  steps:\n    - name: Publish\n"
        '      config: {run: \'echo "url=https://x/${{ inputs.tag }}" >> "$WFE_OUTPUT"\'}\n'
    )
    main = tmp_path / "main.yaml"
    main.write_text(
        "include: lib.yaml\nworkflow:\n  id: main\n  steps:\n    - name: Release\n"
        "      type: workflow\n      config: {workflow: release, inputs: {tag: v1}}\n"
    )
    definitions = load_workflow(main)
    assert [d.id for d in definitions] == ["main", "release"]
    plan = definitions[0].step_by_external_id("Release").body.plan  # type: ignore[union-attr]
    assert plan.config["outputs"] == ["url"]  # the child's declared outputs


def test_child_inputs_are_checked(tmp_path: Path) -> None:
    found = problems_of(
        "workflows:\n"
        "  - id: main\n    steps:\n      - name: Call\n        type: workflow\n"
        "        config: {workflow: child, inputs: {tga: v1}}\n"
        "  - id: child\n    inputs: {tag: string}\n    steps:\n"
        "      - name: A\n        config: {run: echo}\n"
    )
    assert (
        "flow.yaml:4:9: step 'Call': workflow 'child' has no input 'tga' (did you mean 'tag'?)"
        in found
    )
    assert "flow.yaml:4:9: step 'Call': workflow 'child' needs input 'tag' (string)" in found


def test_validate_workflow_returns_problems(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("workflow:\n  id: x\n  steps:\n    - name: A\n")
    [problem] = validate_workflow(file)
    assert str(problem).startswith(f"{file}:4:7:")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(YamlWorkflowError, match="cannot read the file"):
        load_workflow(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- a\n", "must be a mapping"),
        ("workflow: 3\n", "`workflow:` must be a mapping"),
        ("workflow:\n  id: x\n", "needs `steps:`"),
        ("workflow:\n  id: x\n  steps: [3]\n", "a step must be a mapping"),
        ("workflow:\n  steps: [{name: a, config: {run: x}}]\n", "missing `id`"),
        (
            "workflow:\n  id: x\n  inputs: {a: strng}\n  steps: [{name: a, config: {run: x}}]\n",
            "unknown type 'strng'",
        ),
        ("workflow:\n  id: x\n  steps: [{name: a, parallel: []}]\n", "non-empty list"),
        (
            "workflow:\n  id: x\n  steps: [{name: a, config: {run: x}, when: {field: data.x}}]\n",
            "exactly one operator",
        ),
        (
            "workflow:\n  id: x\n  steps: [{name: a, config: {run: x}, when: {all: []}}]\n",
            "non-empty list of conditions",
        ),
        (
            "workflow:\n  id: x\n  error_behavior: {type: retyr}\n"
            "  steps: [{name: a, config: {run: x}}]\n",
            "did you mean 'retry'",
        ),
        (
            "workflow:\n  id: x\n  steps: [{name: a, config: {run: 'echo ${{ inputs.x'}}]\n",
            "unterminated reference",
        ),
        (
            "workflow:\n  id: x\n  steps: [{name: a, config: {run: 'echo ${{ secrets.x }}'}}]\n",
            "unknown namespace 'secrets'",
        ),
        (
            "workflow:\n  id: x\n  steps: [{name: a, type: deno, config: {script: x, "
            "permissions: {nett: [a]}}}]\n",
            "did you mean 'net'",
        ),
    ],
)
def test_problems(text: str, message: str) -> None:
    found = problems_of(text)
    assert any(message in p for p in found), found
    assert all(p.startswith("flow.yaml") for p in found)
