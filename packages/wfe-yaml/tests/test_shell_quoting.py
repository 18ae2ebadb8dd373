"""References in every bash context: generated scripts run through real bash, and each
value must arrive as exactly one argument, byte for byte, and never run."""

from __future__ import annotations

import contextlib
import subprocess
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wfe_core.models import WorkflowStatus
from wfe_yaml import YamlWorkflowError, load_workflows_from_str
from wfe_yaml import interpolation as ip
from wfe_yaml_support import result_of, run_yaml

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

ADVERSARIAL = [
    "",
    " ",
    "a b c d e",
    "*",
    "/*",
    "?",
    "[a]",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a[$(touch PWNED)]",
    "$((1+1))",
    "${HOME}",
    "'",
    '"',
    "\\",
    "\\n",
    "\n",
    "a\nb\n",
    "\t x \t",
    "EOF",
    "\nEOF\n",
    "'\"$(touch PWNED)\"'",
    "-n",
    "#",
    "~",
    "a&&touch PWNED",
    ";touch PWNED;",
    "){ touch PWNED; }",
]
VALUES = st.one_of(
    st.sampled_from(ADVERSARIAL),
    st.text(alphabet=" *?[]$()`'\"\\\n\t{};&|<>#~!aE-", max_size=12),
)

# Each template: a script fragment with {R} where the reference goes, and the bytes it must
# print for a value v. Fragments print with markers so a split value shows as extra `<>`.
TEMPLATES: list[tuple[str, Callable[[str], str]]] = [
    ("printf '<%s>' {R}\n", lambda v: f"<{v}>"),
    ("printf '<%s>' x{R}y\n", lambda v: f"<x{v}y>"),
    ("printf '<%s>' \"a {R} b\"\n", lambda v: f"<a {v} b>"),
    ("printf '<%s>' 'a {R} b'\n", lambda v: f"<a {v} b>"),
    ("printf '<%s>' $'\\t{R}\\x41'\n", lambda v: f"<\t{v}A>"),
    ("printf '<%s>' $\"{R}\"\n", lambda v: f"<{v}>"),
    # Item 4: after $((1)) inside "$(...)", the scanner used to think it was in quotes.
    ("printf '<%s>' \"$(printf '[%s]' $((1)) {R})\"\n", lambda v: f"<[1][{v}]>"),
    ("printf '<%s>' \"$(printf '[%s]' \"$((1))\" {R})\"\n", lambda v: f"<[1][{v}]>"),
    ('printf \'<%s>\' "$(printf \'[%s]\' "$(echo ")")" {R})"\n', lambda v: f"<[)][{v}]>"),
    # Item 4: a `"` in a here-document body is plain text.
    ('x=$(cat <<EOF\n"{R}"\nEOF\n)\nprintf \'<%s>\' "$x"\n', lambda v: f'<"{v}">'),
    ("x=$(cat <<-EOF\n\t'{R}'\n\tEOF\n)\nprintf '<%s>' \"$x\"\n", lambda v: f"<'{v}'>"),
    (
        "cat <<A; cat <<B\n\"a{R}\nA\n'b{R}\nB\nprintf '<%s>' {R}\n",
        lambda v: f"\"a{v}\n'b{v}\n<{v}>",
    ),
    ("cat <<EOF\n$(printf '<%s>' {R})\nEOF\n", lambda v: f"<{v}>\n"),
    (
        "x=$(case a in a) printf '<%s>' {R};; esac)\nprintf '%s' \"$x\" {R}\n",
        lambda v: f"<{v}>{v}",
    ),
    ("case {R} in *) printf '<%s>' {R};; esac\n", lambda v: f"<{v}>"),
    ("# it's a comment \" {R}\nprintf '<%s>' {R}\n", lambda v: f"<{v}>"),
    ("echo x # it's a comment\nprintf '<%s>' {R}\n", lambda v: f"x\n<{v}>"),
    ("printf '<%s>' \\\n  {R} \\'\n", lambda v: f"<{v}><'>"),
    ("printf '<%s>' \"$#\" {R}\n", lambda v: f"<0><{v}>"),
    ("x={R}; printf '<%s>' \"$x\"\n", lambda v: f"<{v}>"),
    ("printf '<%s>' \"$( (printf '[%s]' {R}) )\"\n", lambda v: f"<[{v}]>"),
    ("if [[ {R} == {R} ]]; then printf '<%s>' eq; fi\n", lambda v: "<eq>"),
    ("printf '<%s>' {R} | cat\n", lambda v: f"<{v}>"),
    ("printf '<%s>' <<<{R}\ncat <<<{R}\n", lambda v: f"<>{v}\n"),
    (
        "IFS= read -r -d '' -p {R} ans <<<{R} || true\nprintf '<%s>' \"$ans\"\n",
        lambda v: f"<{v}\n>",
    ),
    ("printf '<%s>' {R} 2>/dev/null >&1\n", lambda v: f"<{v}>"),
]


def run_bash(code: str, env: Mapping[str, str], cwd: Path) -> bytes:
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", code],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        capture_output=True,
        check=False,
        timeout=10,
    )
    assert done.returncode == 0, (code, done.stderr)
    return done.stdout


def substitute(script: str, values: Mapping[str, object]) -> tuple[str, dict[str, str]]:
    return ip.shell_safe(
        script,
        lambda ref: values[ref.path[0]],
        only=lambda ref: ref.is_runtime,
        prefix="WFE_REF_",
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.sampled_from(range(len(TEMPLATES))), VALUES), min_size=1, max_size=4))
def test_values_arrive_whole_in_every_context(tmp_path: Path, parts: list[tuple[int, str]]) -> None:
    script, expected, values = "", "", {}
    for number, (template, value) in enumerate(parts):
        fragment, output = TEMPLATES[template]
        script += fragment.replace("{R}", f"${{{{ inputs.v{number} }}}}")
        expected += output(value)
        values[f"v{number}"] = value
    code, env = substitute(script, values)
    for value in values.values():
        if len(value) > 5:
            assert value not in code
    stdout = run_bash(code, env, tmp_path)
    assert stdout.decode() == expected
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # `a b c d e` used to arrive as 5 arguments in both.
        ('printf "<%s>" "$(echo $((1)) >/dev/null; printf "[%s]" ${{ inputs.x }})"', "<[V]>"),
        ('cat <<EOF\n" ${{ inputs.x }}\nEOF\nprintf "<%s>" ${{ inputs.x }}', '" V\n<V>'),
    ],
)
def test_the_scanner_keeps_track(tmp_path: Path, script: str, expected: str) -> None:
    value = "a b * d e"
    code, env = substitute(script, {"x": value})
    assert run_bash(code, env, tmp_path).decode() == expected.replace("V", value)


INTEGER_TEMPLATES: list[tuple[str, Callable[[int], str]]] = [
    ("printf '<%s>' $(( {R} + 1 ))\n", lambda n: f"<{n + 1}>"),
    ("printf '<%s>' \"$(( {R} * 2 ))\"\n", lambda n: f"<{n * 2}>"),
    ("printf '<%s>' $[{R}]\n", lambda n: f"<{n}>"),
    ("if (( {R} > 3 )); then printf '<big>'; fi\n", lambda n: "<big>" if n > 3 else ""),
    ("let 'x = {R} + 0'; printf '<%s>' \"$x\"\n", lambda n: f"<{n}>"),
    ("let x={R}; printf '<%s>' \"$x\"\n", lambda n: f"<{n}>"),
    ("if [[ {R} -ge 3 ]]; then printf '<ge>'; fi\n", lambda n: "<ge>" if n >= 3 else ""),
    ("if [[ 3 -lt \"{R}\" ]]; then printf '<lt>'; fi\n", lambda n: "<lt>" if n > 3 else ""),
    ("declare -i k={R}; printf '<%s>' \"$k\"\n", lambda n: f"<{n}>"),
    ('declare -i j; j="{R}"; printf \'<%s>\' "$j"\n', lambda n: f"<{n}>"),
    ("a=(); a[{R} + 5]=x; printf '<%s>' \"${#a[@]}\"\n", lambda n: "<1>"),
    (
        "for (( i = {R}; i < {R} + 2; i++ )); do printf '<%s>' $i; done\n",
        lambda n: f"<{n}><{n + 1}>",
    ),
    ("s=abcdefgh; printf '<%s>' \"$(( {R} ))${s:1:2}\"\n", lambda n: f"<{n}bc>"),
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(range(len(INTEGER_TEMPLATES))),
    st.one_of(st.integers(-5, 5), st.integers(0, 10**6).map(lambda n: f"0{n}")),
)
def test_integers_work_in_arithmetic(tmp_path: Path, template: int, value: int | str) -> None:
    fragment, output = INTEGER_TEMPLATES[template]
    code, env = substitute(fragment.replace("{R}", "${{ inputs.n }}"), {"n": value})
    number = int(value) if isinstance(value, int) else int(value, 10)
    assert run_bash(code, env, tmp_path).decode() == output(number)


@pytest.mark.parametrize("fragment", [t for t, _ in INTEGER_TEMPLATES])
@pytest.mark.parametrize("value", ["a[$(touch PWNED)]", "1+1", "", "0x10", "1 ", "n"])
def test_arithmetic_takes_only_integers(tmp_path: Path, fragment: str, value: str) -> None:
    script = fragment.replace("{R}", "${{ inputs.n }}")
    with pytest.raises(ip.InterpolationError, match="must be an integer"):
        substitute(script, {"n": value})


# -- at load time ------------------------------------------------------------------------------

REFUSED = [
    # (a line of the script, what the problem says)
    "if [[ ${{ inputs.s }} -gt 3 ]]; then :; fi",
    'if [[ 3 -eq "${{ inputs.s }}" ]]; then :; fi',
    "echo $(( ${{ inputs.s }} + 1 ))",
    "echo $[ ${{ inputs.s }} ]",
    "(( ${{ inputs.s }} > 3 )) || true",
    "for (( i = ${{ inputs.s }}; i < 1; i++ )); do :; done",
    "let x=${{ inputs.s }}",
    "let 'x = ${{ inputs.s }}'",
    "declare -i n=${{ inputs.s }}",
    'declare -i n; n="${{ inputs.s }}"',
    "local -i n=${{ inputs.s }}",
    "a[${{ inputs.s }}]=1",
    'unset "a[${{ inputs.s }}]"',
    "echo $(( ${{ outputs.n }} ))",
    "echo $(( ${{ inputs.n.deeper }} ))",
]
UNSAFE = [
    ("echo `echo ${{ inputs.s }}`", "inside backquotes"),
    ("echo ${x:-${{ inputs.s }}}", "inside a ${...} parameter expansion"),
    ('echo "${s:${{ inputs.n }}}"', "inside a ${...} parameter expansion"),
    ("cat <<'EOF'\n  ${{ inputs.s }}\n  EOF", "quoted delimiter"),
    ('cat <<"EOF"\n  ${{ inputs.s }}\n  EOF', "quoted delimiter"),
    ("cat <<\\EOF\n  ${{ inputs.s }}\n  EOF", "quoted delimiter"),
    ("cat <<${{ inputs.s }}\n  x\n  EOF", "here-document delimiter"),
    ("[[ -v ${{ inputs.s }} ]] || true", "variable name"),
    ("read ${{ inputs.s }} <<<x", "variable name"),
    ('printf -v "${{ inputs.s }}" %s 1', "variable name"),
    ("declare -n r=${{ inputs.s }}", "variable name"),
]


def workflow_text(run: str) -> str:
    body = "\n".join("          " + line for line in run.splitlines())
    return (
        "workflow:\n"
        "  id: q\n"
        "  inputs: {s: string, n: integer}\n"
        "  steps:\n"
        "    - name: Step\n"
        "      config:\n"
        "        run: |\n"
        "          echo first\n"
        f"{body}\n"
    )


def load_problems(text: str) -> list[str]:
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(text, {"word": "x"}, file_name="q.yaml")
    return [str(p) for p in caught.value.problems]


def where(run: str, text: str) -> str:
    """``q.yaml:line:column`` of the first reference in ``run`` within ``text``."""
    offset = text.index("${{", text.index("echo first"))
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rindex("\n", 0, offset)
    return f"q.yaml:{line}:{column}"


@pytest.mark.parametrize("run", REFUSED)
def test_arithmetic_contexts_refuse_non_integer_references(run: str) -> None:
    text = workflow_text(run)
    problems = load_problems(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(where(run, text) + ": ")
    assert "arithmetic context" in problems[0]


@pytest.mark.parametrize(("run", "message"), UNSAFE)
def test_unsafe_places_are_refused(run: str, message: str) -> None:
    text = workflow_text(run)
    problems = load_problems(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(where(run, text) + ": ")
    assert "cannot stand here" in problems[0]
    assert message in problems[0]


def test_load_time_values_in_arithmetic_must_be_integers() -> None:
    text = workflow_text("echo $(( ((word)) + 1 ))")
    problems = load_problems(text)
    assert len(problems) == 1
    assert "must be an integer; got 'x'" in problems[0]
    definitions = load_workflows_from_str(text, {"word": "41"}, file_name="q.yaml")
    assert definitions


@pytest.mark.anyio
async def test_integer_inputs_work_in_arithmetic_and_strings_cannot_run(tmp_path: Path) -> None:
    canary = tmp_path / "PWNED"
    text = f"""
workflow:
  id: arith
  inputs: {{n: integer, s: string}}
  steps:
    - name: Count
      config:
        run: |
          if [[ ${{{{ inputs.n }}}} -gt 3 ]]; then echo "big $(( ${{{{ inputs.n }}}} * 2 ))"; fi
          s=${{{{ inputs.s }}}}
          [[ $s =~ ^[0-9]+$ ]] || echo "not a number: $s"
          cat <<EOF
          "${{{{ inputs.s }}}}"
          EOF
        working_dir: {tmp_path}
"""
    evil = "a[$(touch PWNED)] *"
    instance = await run_yaml(text, {"n": "5", "s": evil})
    assert instance.status == WorkflowStatus.COMPLETE, instance.pointers
    stdout = result_of(instance, "Count")["stdout"]
    assert "big 10" in stdout
    assert f"not a number: {evil}" in stdout
    assert f'"{evil}"' in stdout
    assert not canary.exists()


@pytest.mark.anyio
async def test_an_integer_input_cannot_be_overwritten_by_a_string(tmp_path: Path) -> None:
    # Outputs named like an input are refused, so a step's string cannot reach an
    # arithmetic place through an integer input.
    canary = tmp_path / "PWNED"
    text = f"""
workflow:
  id: overwrite
  inputs: {{n: integer}}
  steps:
    - name: Set
      config:
        run: echo 'a[$(touch PWNED)]' > "$WFE_OUTPUTS/n"
        working_dir: {tmp_path}
    - name: Use
      config:
        run: echo $(( ${{{{ inputs.n }}}} + 1 ))
        working_dir: {tmp_path}
"""
    instance = await run_yaml(text, {"n": 1})
    assert instance.status == WorkflowStatus.FAILED
    errors = [p.error for p in instance.pointers if p.step_name == "Set" and p.error]
    assert errors
    assert "n" in str(errors[-1])
    assert not [p for p in instance.pointers if p.step_name == "Use"]
    assert not canary.exists()


@pytest.mark.anyio
async def test_a_missing_optional_integer_in_arithmetic_fails_the_step(tmp_path: Path) -> None:
    canary = tmp_path / "PWNED"
    text = f"""
workflow:
  id: missing
  inputs: {{n: integer?}}
  steps:
    - name: Use
      config:
        run: echo $(( ${{{{ inputs.n }}}} + 1 ))
        working_dir: {tmp_path}
"""
    instance = await run_yaml(text, {})
    assert instance.status == WorkflowStatus.FAILED
    errors = [p.error for p in instance.pointers if p.step_name == "Use" and p.error]
    assert errors
    assert "must be an integer" in str(errors[-1])
    assert not canary.exists()


# -- random compositions ------------------------------------------------------------------------

PIECES = [
    *["${{ inputs.x }}"] * 3,
    *("$(", "$((1))", ")", "(", "'", '"', "$'", "\\", "\n", " ", "<<EOF", "<<-EOF"),
    *("\nEOF\n", "<<'EOF'", "#", "case", "in", "esac", ";;", "[[", "]]", "-eq", "=="),
    *("let", "declare", "-i", "a[", "]", "${x:-", "}", "=", "x", "n=", ";", "|", "&&"),
    *("echo", "printf '<%s>'", "cat", "$[1]", "`echo`", "{", "<<<"),  # no loops
    *("if true; then", "fi", "*)", '$"', "\\'", "read", "-p", "printf -v", "2>", "<"),
    *("mapfile -t", "declare -n r=", "unset", "(("),
]
CANARIES = ["a[$(touch PWNED)]", "$(touch PWNED)", "`touch PWNED`", "'$(touch PWNED)'"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=16),
    st.sampled_from(["", " "]),
    st.sampled_from(CANARIES),
)
def test_no_script_runs_a_value(tmp_path: Path, pieces: list[str], sep: str, value: str) -> None:
    """Whatever the script around it, a value the loader accepts never runs (random
    compositions of shell syntax; scripts bash rejects are fine, they run nothing)."""
    script = sep.join(pieces)
    try:
        code, env = substitute(script, {"x": value})
    except ip.InterpolationError:
        return  # refused, or an arithmetic place that needs an integer
    # A killed script (timeout) still must not have run the value.
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", code],
            env={"PATH": "/usr/bin:/bin", **env},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=10,
        )
    assert not (tmp_path / "PWNED").exists(), code
