"""References in strings, and how they go into shell code safely."""

from __future__ import annotations

import subprocess

import pytest

from wfe_yaml import interpolation as ip
from wfe_yaml.conditions import Combination, FieldCondition


def refs(text: str) -> list[str]:
    return [r.dotted for r in ip.references(text)]


def test_references() -> None:
    assert refs("a ${{ inputs.x }} b ${{outputs.v.w}} ((name)) $((1 + 2)) $((n))") == [
        "inputs.x",
        "outputs.v.w",
        "config.name",
    ]
    assert refs("${{ data.a }}${{ config.b }}${{ plain }}") == ["data.a", "config.b", "data.plain"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ }}", "empty reference"),
        ("${{ inputs.x", "unterminated"),
        ("${{ secrets.token }}", "unknown namespace 'secrets'"),
        ("${{ inputs }}", "names no value"),
        ("${{ inputs.a b }}", "malformed reference"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(ip.InterpolationError, match=message):
        ip.references(text)


def test_render_keeps_types_of_whole_references() -> None:
    data = {"n": 3, "items": [1, 2], "v": "1.10", "nested": {"a": {"b": True}}}

    def resolve(ref: ip.Reference) -> object:
        return ip.resolve(ref, data, {"env": "prod"})

    def everything(ref: ip.Reference) -> bool:
        return True

    assert ip.render("${{ inputs.n }}", resolve, only=everything) == 3
    assert ip.render("${{ outputs.items }}", resolve, only=everything) == [1, 2]
    assert ip.render("v=${{ outputs.v }}", resolve, only=everything) == "v=1.10"
    assert ip.render("${{ data.nested.a.b }}", resolve, only=everything) is True
    assert ip.render("x${{ data.missing }}y", resolve, only=everything) == "xy"
    assert ip.render({"k": ["((env))-${{ inputs.n }}"]}, resolve, only=everything) == {
        "k": ["prod-3"]
    }


EVIL = "$(echo EXECUTED); `echo EXECUTED` ' \" \\ ${HOME} *"


@pytest.mark.parametrize(
    "script",
    [
        "printf '%s\\n' ${{ inputs.x }}",
        'printf "%s\\n" "v=${{ inputs.x }}"',
        "printf '%s\\n' 'v=${{ inputs.x }}'",
        "printf '%s\\n' ${{ inputs.x }}${{ inputs.x }}  # a comment with ' quote",
        'printf "%s\\n" "$(printf %s "${{ inputs.x }}")"',
    ],
)
def test_shell_safe_never_runs_data(script: str) -> None:
    code, env = ip.shell_safe(
        script,
        lambda ref: EVIL,
        only=lambda ref: ref.is_runtime,
        prefix="WFE_REF_",
    )
    assert EVIL not in code
    done = subprocess.run(
        ["bash", "-c", code], env=env, capture_output=True, text=True, check=True, timeout=10
    )
    assert "EXECUTED" not in done.stdout.replace(EVIL, "")
    assert EVIL in done.stdout


def test_conditions_compare_like_the_command_line() -> None:
    def field(op: str, value: object, path: str = "x") -> FieldCondition:
        return FieldCondition("data", tuple(path.split(".")), op, value)

    data = {"x": "3", "v": "1.10", "tags": ["a", "b"], "flag": "true", "n": 5}
    assert field("equals", 3).evaluate(data, {})
    assert not field("equals", 1.1, "v").evaluate(data, {})
    assert field("equals", "1.10", "v").evaluate(data, {})
    assert field("equals", True, "flag").evaluate(data, {})
    assert field("contains", "b", "tags").evaluate(data, {})
    assert field("gt", 2).evaluate(data, {})
    assert not field("gt", 2, "tags").evaluate(data, {})
    assert field("lte", 5, "n").evaluate(data, {})
    assert field("is_null", True, "missing").evaluate(data, {})
    assert field("is_not_null", True, "n").evaluate(data, {})
    one_of = Combination("one_of", (field("equals", 3), field("equals", 5, "n")))
    assert not one_of.evaluate(data, {})
    assert Combination("none", (field("equals", 4),)).evaluate(data, {})
    assert Combination("not", (field("equals", 4),)).evaluate(data, {})
