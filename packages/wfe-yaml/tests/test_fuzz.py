"""Fuzzing the loader: whatever the input, it loads or raises YamlWorkflowError with
positions, never anything else."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from wfe_yaml import YamlWorkflowError, load_workflows_from_str

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


def _check(text: str) -> None:
    try:
        load_workflows_from_str(text, {"x": "1"}, file_name="fuzz.yaml")
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
