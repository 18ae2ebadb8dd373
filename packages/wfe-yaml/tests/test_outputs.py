"""Step outputs that data cannot forge and that never vanish, and workflow data of any size:
real bash and Deno processes."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from wfe_core.models import WorkflowStatus
from wfe_yaml import YamlWorkflowError, load_workflows_from_str
from wfe_yaml.executors.outputs import parse_output_file
from wfe_yaml_support import pointers, result_of, run_yaml

if TYPE_CHECKING:
    from pathlib import Path

    from wfe_core.models import WorkflowInstance

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


def error_of(instance: WorkflowInstance, name: str) -> str:
    found = pointers(instance, name)
    assert found, f"step {name!r} never ran"
    return found[-1].error or ""


def gate(canary: Path) -> str:
    """A step that creates ``canary`` when output ``approved`` is "yes"."""
    return (
        "    - name: Deploy\n"
        "      when: {field: outputs.approved, equals: 'yes'}\n"
        f"      config: {{run: 'touch {canary}'}}\n"
    )


# -- item 5: printed data forges nothing -----------------------------------------------------


async def test_printed_data_sets_no_output_opens_no_gate_and_overwrites_no_input(
    tmp_path: Path,
) -> None:
    canary = tmp_path / "deployed"
    payload = "##wfe[output approved=yes]\n##wfe[output who=mallory]"
    instance = await run_yaml(
        "workflow:\n  id: forge\n  inputs: {who: string, payload: string}\n  steps:\n"
        "    - name: Echo\n"
        "      config: {run: 'echo \"${{ inputs.payload }}\"'}\n" + gate(canary),
        {"who": "alice", "payload": payload},
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Echo")
    assert not canary.exists()
    assert instance.data == {"who": "alice", "payload": payload}
    # The lines are shown as the output they are.
    assert "##wfe[output approved=yes]" in result_of(instance, "Echo")["stdout"]


async def test_output_file_and_output_directory() -> None:
    instance = await run_yaml(
        r"""
workflow:
  id: files
  inputs: {text: string}
  steps:
    - name: Write
      config:
        run: |
          echo "plain=a=b c" >> "$WFE_OUTPUT"
          printf 'notes<<EOF\nline 1\n\nline 3\nEOF\n' >> "$WFE_OUTPUT"
          printf '%s' "${{ inputs.text }}" > "$WFE_OUTPUTS/copy"
          echo "with newline" > "$WFE_OUTPUTS/echoed"
    - name: Read
      config: {run: 'echo "${{ outputs.plain }}|${{ outputs.notes }}"'}
""",
        {"text": "multi\nline=1\n"},
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Write")
    assert instance.data == {
        "text": "multi\nline=1\n",
        "plain": "a=b c",
        "notes": "line 1\n\nline 3",
        "copy": "multi\nline=1",  # one final newline is dropped, as from `echo`
        "echoed": "with newline",
    }
    assert result_of(instance, "Read")["stdout"] == "a=b c|line 1\n\nline 3"


async def test_data_written_to_an_output_file_cannot_add_another_output(tmp_path: Path) -> None:
    canary = tmp_path / "deployed"
    value = "hi\napproved=yes\nEOF\napproved<<X\nyes\nX"
    instance = await run_yaml(
        "workflow:\n  id: safe\n  inputs: {text: string}\n  steps:\n"
        "    - name: Copy\n"
        '      config: {run: \'printf %s "${{ inputs.text }}" > "$WFE_OUTPUTS/greeting"\'}\n'
        + gate(canary),
        {"text": value},
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Copy")
    assert instance.data == {"text": value, "greeting": value}
    assert not canary.exists()


def notices(caplog: pytest.LogCaptureFixture, step: str) -> list[str]:
    """What the executor told the user about step ``step`` (stream ``wfe`` of wfe.output)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wfe.output"
        and getattr(r, "stream", "") == "wfe"
        and getattr(r, "step_name", "") == step
    ]


async def test_stdout_outputs_only_when_the_step_opts_in(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="wfe.output")
    instance = await run_yaml(
        "workflow:\n  id: optin\n  steps:\n"
        "    - name: Old\n"
        "      config: {stdout_outputs: true, run: 'echo \"##wfe[output v=1]\"; echo done'}\n"
        "    - name: New\n"
        '      config: {run: \'printf "%s%s\\n" "##wfe" "[output w=2]"\'}\n'
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Old")
    assert instance.data == {"v": "1"}
    assert result_of(instance, "Old")["stdout"] == "done"
    assert result_of(instance, "New")["stdout"] == "##wfe[output w=2]"
    [notice] = notices(caplog, "New")
    assert "set no output unless config.stdout_outputs is true" in notice
    assert notices(caplog, "Old") == []


def test_a_script_printing_output_commands_is_refused_at_load_time() -> None:
    text = (
        "workflow:\n  id: old\n  steps:\n"
        "    - name: Build\n"
        "      config: {run: 'echo \"##wfe[output version=1]\"'}\n"
    )
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(text)
    [problem] = caught.value.problems
    assert str(problem.mark) == "<string>:5:21"  # the run: value
    assert "stdout_outputs: true" in problem.message
    assert "$WFE_OUTPUT" in problem.message


def test_outputs_named_like_inputs_are_refused_at_load_time() -> None:
    text = (
        "workflows:\n"
        "  - id: parent\n    inputs: {who: string, tag: string}\n    outputs: {who: string}\n"
        "    steps:\n"
        "      - name: Child\n"
        "        type: workflow\n"
        "        config: {workflow: child, inputs: {x: '1'}}\n"
        "  - id: child\n    inputs: {x: string}\n    outputs: {tag: string}\n"
        "    steps:\n      - {name: C, config: {run: 'echo tag=1 >> \"$WFE_OUTPUT\"'}}\n"
    )
    with pytest.raises(YamlWorkflowError) as caught:
        load_workflows_from_str(text)
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 2, messages
    assert "<string>:4:15: output 'who' has the name of a declared input" in messages[0]
    assert "step 'Child' copies output 'tag', the name of a declared input" in messages[1]


@pytest.mark.parametrize("channel", ["file", "directory", "stdout", "deno"])
async def test_an_output_named_like_an_input_fails_the_step(channel: str) -> None:
    config = {
        "file": "{run: 'echo who=mallory >> \"$WFE_OUTPUT\"'}",
        "directory": "{run: 'echo mallory > \"$WFE_OUTPUTS/who\"'}",
        "stdout": "{stdout_outputs: true, run: 'echo \"##wfe[output who=mallory]\"'}",
        "deno": '{script: \'Wfe.setOutput("who", "mallory")\'}',
    }[channel]
    kind = "deno" if channel == "deno" else "shell"
    instance = await run_yaml(
        "workflow:\n  id: clash\n  inputs: {who: string}\n  steps:\n"
        f"    - name: Set\n      type: {kind}\n      config: {config}\n",
        {"who": "alice"},
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "set output 'who', the name of a declared input" in error_of(instance, "Set")
    assert instance.data == {"who": "alice"}


async def test_the_step_files_are_private_and_removed_afterwards() -> None:
    instance = await run_yaml(
        "workflow:\n  id: private\n  steps:\n    - name: Look\n      config:\n        run: |\n"
        '          folder=$(dirname "$WFE_OUTPUT")\n'
        '          echo "$folder"\n'
        '          stat -c %a "$folder" "$WFE_OUTPUT" "$WFE_OUTPUTS" "$WFE_DATA_FILE"\n'
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Look")
    folder, *modes = result_of(instance, "Look")["stdout"].splitlines()
    assert modes == ["700", "600", "700", "600"]
    assert not os.path.exists(folder)  # noqa: ASYNC240 (a test's check)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("printf 'a<<EOF\\nno end\\n' >> \"$WFE_OUTPUT\"", "`a<<EOF` is never closed"),
        ("echo 'just text' >> \"$WFE_OUTPUT\"", "line 1: expected `key=value`"),
        ('echo x > "$WFE_OUTPUTS/9bad"', "'9bad' is not an output name"),
        ('mkfifo "$WFE_OUTPUTS/pipe"', "$WFE_OUTPUTS/pipe: not a regular file (a FIFO)"),
        (
            'ln -s /etc/hostname "$WFE_OUTPUTS/link"',
            "$WFE_OUTPUTS/link: a symbolic link, which is not followed",
        ),
    ],
)
async def test_a_bad_output_fails_the_step_with_what_is_wrong(run: str, message: str) -> None:
    instance = await run_yaml(
        "workflow:\n  id: bad\n  steps:\n    - name: Write\n"
        f"      config: {{run: {json.dumps(run)}}}\n",
        timeout=20,
    )
    assert instance.status == WorkflowStatus.FAILED
    assert message in error_of(instance, "Write")


async def test_a_failed_step_sets_no_outputs() -> None:
    instance = await run_yaml(
        "workflow:\n  id: failed\n  steps:\n"
        "    - name: Half\n"
        "      config: {run: 'echo a=1 >> \"$WFE_OUTPUT\"; exit 4'}\n"
        "      ensure: {name: Look, config: {run: 'echo \"[${{ outputs.a }}]\"'}}\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "a" not in instance.data
    assert result_of(instance, "Look")["stdout"] == "[]"


# -- item 6: long outputs are kept whole or fail the step ------------------------------------


async def test_a_long_stdout_output_is_kept_whole_and_only_its_log_is_cut() -> None:
    long = "x" * 20_000
    instance = await run_yaml(
        "workflow:\n  id: long\n  steps:\n    - name: Big\n"
        "      config:\n        stdout_outputs: true\n"
        f"        run: 'echo \"##wfe[output big={long}]\"; echo {long}'\n"
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Big")
    assert instance.data == {"big": long}
    assert result_of(instance, "Big")["stdout"] == "x" * 4000 + "… (16000 more characters)"


async def test_a_stdout_output_over_the_limit_fails_the_step() -> None:
    instance = await run_yaml(
        "workflow:\n  id: huge\n  steps:\n    - name: Huge\n"
        "      config:\n        stdout_outputs: true\n"
        "        run: |\n"
        "          printf '##wfe[output big='\n"
        "          head -c 5000000 /dev/zero | tr '\\0' a\n"
        "          printf ']\\n'\n"
        "          echo after\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "line on stdout is over the limit of 4 MiB" in error_of(instance, "Huge")
    assert result_of(instance, "Huge")["stdout"] == "after"


async def test_an_ordinary_line_over_the_limit_is_only_cut_in_the_log() -> None:
    instance = await run_yaml(
        "workflow:\n  id: huge\n  steps:\n    - name: Huge\n"
        "      config: {run: 'head -c 5000000 /dev/zero | tr \"\\\\0\" a; echo; echo after'}\n"
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Huge")
    first, after = result_of(instance, "Huge")["stdout"].splitlines()
    assert first == "a" * 4000 + "… (a line over 4 MiB)"
    assert after == "after"


async def test_an_output_file_over_the_limit_fails_the_step() -> None:
    instance = await run_yaml(
        "workflow:\n  id: huge\n  steps:\n    - name: Huge\n"
        '      config: {run: \'head -c 5000000 /dev/zero | tr "\\\\0" a > "$WFE_OUTPUTS/big"\'}\n'
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "$WFE_OUTPUTS/big: larger than the 4 MiB limit" in error_of(instance, "Huge")


async def test_long_deno_outputs_are_kept_whole() -> None:
    instance = await run_yaml(
        "workflow:\n  id: deno\n  steps:\n    - name: Script\n      type: deno\n"
        "      config:\n        script: |\n"
        "          Wfe.setOutput('text', 'y'.repeat(100000));\n"
        "          Wfe.setOutput('items', Array.from({length: 2000}, (_, i) => ({i})));\n"
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Script")
    assert instance.data["text"] == "y" * 100_000
    assert instance.data["items"] == [{"i": i} for i in range(2000)]


async def test_a_deno_output_over_the_limit_fails_the_step() -> None:
    instance = await run_yaml(
        "workflow:\n  id: deno\n  steps:\n    - name: Script\n      type: deno\n"
        "      config: {script: \"Wfe.setOutput('text', 'y'.repeat(5 * 1024 * 1024))\"}\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "Wfe.setOutput/Wfe.log message is over the limit of 4 MiB" in error_of(
        instance, "Script"
    )


# -- item 7: data of any size ----------------------------------------------------------------


def big_data(**sizes: int) -> dict[str, Any]:
    return {key: key[0] * size for key, size in sizes.items()}


async def test_large_data_does_not_break_later_steps(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="wfe.output")
    data = big_data(big=300 * 1024, small=10)
    instance = await run_yaml(
        """
workflow:
  id: large
  inputs: {big: string, small: string}
  steps:
    - name: First
      config: {run: 'echo first'}
    - name: Second
      config:
        run: |
          echo "${WFE_DATA_BIG-unset} ${WFE_DATA-unset} $WFE_DATA_SMALL"
          wc -c < "$WFE_DATA_FILE"
""",
        data,
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "First")
    size = len(json.dumps(data))
    assert result_of(instance, "Second")["stdout"] == f"unset unset ssssssssss\n{size}"
    [notice] = notices(caplog, "Second")
    assert notice.startswith("not set, too large for the environment: WFE_DATA, WFE_DATA_BIG;")


async def test_many_medium_values_still_fit() -> None:
    # 24 values of 60 KiB: each fits one variable, together they are over ARG_MAX (2 MiB).
    data = {f"v{i}": "m" * 60 * 1024 for i in range(24)}
    instance = await run_yaml(
        "workflow:\n  id: many\n  steps:\n    - name: Count\n"
        "      config: {run: 'env | grep -c \"^WFE_DATA_V\"'}\n",
        data,
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Count")
    assert result_of(instance, "Count")["stdout"] == "4"  # within the 256 KiB for them all


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{run: 'echo ${{ inputs.big }} | wc -c'}", "${{ inputs.big }} in config.run is 200.0 KiB"),
        (
            "{env: {BIG: '${{ inputs.big }}'}, run: 'echo \"$BIG\" | wc -c'}",
            "config.env.BIG is 200.0 KiB",
        ),
    ],
)
async def test_a_value_too_large_for_a_variable_fails_clearly(config: str, message: str) -> None:
    instance = await run_yaml(
        "workflow:\n  id: direct\n  inputs: {big: string}\n  steps:\n"
        f"    - name: Use\n      config: {config}\n",
        big_data(big=200 * 1024),
    )
    assert instance.status == WorkflowStatus.FAILED
    error = error_of(instance, "Use")
    assert message in error
    assert "over the 128.0 KiB one environment variable may hold" in error
    assert "$WFE_DATA_FILE" in error


async def test_a_script_too_long_to_start_fails_clearly() -> None:
    instance = await run_yaml(
        "workflow:\n  id: long\n  steps:\n"
        f"    - name: Use\n      config: {{run: 'echo hi # {'x' * 200 * 1024}'}}\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    error = error_of(instance, "Use")
    assert "cannot start 'bash': its environment and command line are over the system's" in error


async def test_a_referenced_value_that_fits_is_passed_whole() -> None:
    instance = await run_yaml(
        "workflow:\n  id: fits\n  inputs: {big: string}\n  steps:\n"
        "    - name: Use\n      config: {run: 'printf %s ${{ inputs.big }} | wc -c'}\n",
        big_data(big=100 * 1024),
    )
    assert instance.status == WorkflowStatus.COMPLETE, error_of(instance, "Use")
    assert result_of(instance, "Use")["stdout"].strip() == str(100 * 1024)


# -- the $WFE_OUTPUT format, as a property ---------------------------------------------------

KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
VALUE = st.text(st.characters(exclude_categories=("Cs",)), max_size=50)


@given(st.dictionaries(KEY, VALUE, max_size=5), st.data())
def test_the_output_file_format_round_trips(outputs: dict[str, str], data: Any) -> None:
    """Written as GitHub documents it (a block with a delimiter the value does not hold, or
    one line for a value without newlines), every value reads back exactly."""
    lines: list[str] = []
    for key, value in outputs.items():
        single = "\n" not in value and "\r" not in value
        if single and data.draw(st.booleans()):
            lines.append(f"{key}={value}")
        else:
            delimiter = "EOF_" + str(len(value))
            while delimiter in value:
                delimiter += "_"
            lines.extend([f"{key}<<{delimiter}", *value.split("\n"), delimiter])
    # A \r at a line's end is dropped (CRLF files), so values with \r are left out.
    assume(all("\r" not in v for v in outputs.values()))
    text = "\n".join(lines) + "\n"
    assert parse_output_file(text.encode()) == outputs
