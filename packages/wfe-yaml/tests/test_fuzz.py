"""Fuzzing the loader: whatever the input, it loads or raises YamlWorkflowError with
positions, never anything else."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from wfe_yaml import YamlWorkflowError, load_workflows_from_str

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wfe_core.providers import StepExecutor

KEYS = [
    "workflow",
    "workflows",
    "include",
    "id",
    "version",
    "steps",
    "name",
    "type",
    "config",
    "run",
    "script",
    "parallel",
    "when",
    "field",
    "equals",
    "gt",
    "all",
    "any",
    "not",
    "inputs",
    "outputs",
    "error_behavior",
    "interval",
    "max_retries",
    "timeout",
    "on_failure",
    "ensure",
    "on_success",
    "permissions",
    "net",
    "workflow",
    "_t",
    "<<",
    "shell",
    "env",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "shell",
            "deno",
            "workflow",
            "5s",
            "1h30m",
            "bad",
            "${{ inputs.x }}",
            "((x))",
            "${{",
            "string",
            "integer?",
            "retry",
            "echo hi",
            "",
            "main",
        ]
    ),
    st.text(max_size=12),
)


def _tree() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
        ),
        max_leaves=25,
    )


def _check(text: str, executors: Mapping[str, StepExecutor] | None = None) -> None:
    try:
        load_workflows_from_str(text, {"x": "1"}, file_name="fuzz.yaml", executors=executors)
    except YamlWorkflowError as exc:
        problems = exc.problems
    else:
        return
    assert problems
    for problem in problems:
        assert str(problem).startswith("fuzz.yaml")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _check(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree())
def test_structured_documents(tree: Any) -> None:
    import io

    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(
        {"workflow": tree} if not isinstance(tree, dict) else tree, stream
    )
    _check(stream.getvalue())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b", "c"])},
            optional={
                "config": st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=3),
                "type": st.sampled_from(["shell", "deno", "workflow", "nope"]),
                "when": st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=3),
                "parallel": st.just([{"name": "p", "config": {"run": "x"}}]),
                "ensure": st.just({"name": "e", "config": {"run": "x"}}),
            },
        ),
        min_size=1,
        max_size=4,
    )
)
def test_workflows_with_random_steps(steps: list[dict[str, Any]]) -> None:
    import io

    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump({"workflow": {"id": "f", "steps": steps}}, stream)
    _check(stream.getvalue())


#: The config keys of the step types that wait for the outside (and a few wrong ones).
WAITING_KEYS = [
    "event",
    "key",
    "effective_date",
    "timeout",
    "output",
    "prompt",
    "assignee",
    "options",
    "escalation",
    "activity",
    "parameters",
    "after",
    "value",
    "label",
]
WAITING_VALUES = st.recursive(
    st.one_of(
        SCALARS,
        st.sampled_from(["2030-01-01T09:00:00Z", "2030-13-01", "${{ inputs.x }}", "${{", "1h"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(WAITING_KEYS), children, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["wait", "approval", "activity"]),
    st.dictionaries(st.sampled_from(WAITING_KEYS), WAITING_VALUES, max_size=5),
    st.booleans(),
)
def test_waiting_step_types_with_random_config(
    type_name: str, config: dict[str, Any], on_timeout: bool
) -> None:
    """Whatever the config of a wait, approval or activity step, the loader loads it or
    names its problems; it never raises anything else."""
    import io

    step: dict[str, Any] = {"name": "w", "type": type_name, "config": config}
    if on_timeout:
        step["on_timeout"] = {"name": "t", "config": {"run": "x"}}
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(
        {"workflow": {"id": "f", "inputs": {"x": "string?"}, "steps": [step]}}, stream
    )
    # The step types given, not discovered: finding the installed plugins is most of the
    # cost of a load, and it is not what this test is about.
    _check(stream.getvalue(), _waiting_executors())


@functools.cache
def _waiting_executors() -> dict[str, StepExecutor]:
    from wfe_yaml.executors.activity import ActivityExecutor
    from wfe_yaml.executors.approval import ApprovalExecutor
    from wfe_yaml.executors.shell import ShellExecutor
    from wfe_yaml.executors.wait import WaitExecutor

    return {
        "wait": WaitExecutor(),
        "approval": ApprovalExecutor(),
        "activity": ActivityExecutor(),
        "shell": ShellExecutor(),
    }
