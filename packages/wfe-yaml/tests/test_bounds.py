"""Untrusted YAML workflow files cannot exhaust memory or time: only regular files of at most
10 MiB are read, aliases expand within a budget, numbers and durations are bounded."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from wfe_host.cli import main

if TYPE_CHECKING:
    from pathlib import Path

#: Enough for the CLI; a loader reading /dev/zero into memory hits it within a second.
_MEMORY_LIMIT = 1024 * 1024 * 1024


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WFE_") and name not in ("WFE_DENO_BIN",):
            monkeypatch.delenv(name)
    return tmp_path


def wfe(*args: str) -> tuple[int, str]:
    """Exit status and standard output (problems); the count on stderr is left out."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout


def wfe_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process with a memory cap and a time limit, for input that made the
    old loader hang or read until memory ran out (which must fail this test, not the machine)."""

    def limit() -> None:  # pragma: no cover - runs in the child
        resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT, _MEMORY_LIMIT))

    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    return subprocess.run(
        [sys.executable, "-m", "wfe_host", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=False,
    )


STEP = "workflow:\n  id: x\n  steps:\n    - name: a\n      config: {run: echo}\n"


# -- 12: only regular files, at most 10 MiB --------------------------------------------------


def test_a_fifo_as_the_workflow_file_is_refused_at_once(in_tmp: Path) -> None:
    os.mkfifo(in_tmp / "pipe.yaml")  # nobody writes to it: opening it used to block forever
    done = wfe_process("validate", "pipe.yaml", cwd=in_tmp)
    assert done.returncode == 1
    assert done.stdout == "pipe.yaml: cannot read the file: not a regular file (a FIFO)\n"
    assert "Traceback" not in done.stderr


def test_includes_of_dev_zero_and_a_fifo_are_refused_at_the_include(in_tmp: Path) -> None:
    os.mkfifo(in_tmp / "pipe.yaml")
    (in_tmp / "main.yaml").write_text("include: [/dev/zero, pipe.yaml]\n" + STEP)
    done = wfe_process("validate", "main.yaml", cwd=in_tmp)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        "main.yaml:1:11: cannot include '/dev/zero': not a regular file (a character device)",
        "main.yaml:1:22: cannot include 'pipe.yaml': not a regular file (a FIFO)",
    ]
    assert "Traceback" not in done.stderr


def test_a_symlink_to_dev_zero_is_refused(in_tmp: Path) -> None:
    (in_tmp / "zero.yaml").symlink_to("/dev/zero")
    done = wfe_process("run", "zero.yaml", cwd=in_tmp)
    assert done.returncode == 1
    assert "zero.yaml: cannot read the file: not a regular file (a character device)" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not (in_tmp / ".wfe").exists()  # refused before a store was opened


def test_a_workflow_file_over_10_mib_is_refused(in_tmp: Path) -> None:
    big = in_tmp / "big.yaml"
    big.write_text(STEP)
    with big.open("ab") as handle:
        handle.truncate(10 * 1024 * 1024 + 1)  # sparse: costs no disk
    code, out = wfe("validate", "big.yaml")
    assert code == 1
    assert out == "big.yaml: cannot read the file: larger than the 10 MiB limit\n"


def test_an_include_over_10_mib_is_refused_at_the_include(in_tmp: Path) -> None:
    with (in_tmp / "big.yaml").open("wb") as handle:
        handle.truncate(10 * 1024 * 1024 + 1)
    (in_tmp / "main.yaml").write_text("include: big.yaml\n" + STEP)
    code, out = wfe("validate", "main.yaml")
    assert code == 1
    assert out == ("main.yaml:1:10: cannot include 'big.yaml': larger than the 10 MiB limit\n")


# A file of exactly the limit is read: wfe-core's test_files checks the boundary (parsing
# 10 MiB of YAML here would take minutes under coverage).


def test_non_utf8_yaml_names_the_line_and_column_of_the_bad_byte(in_tmp: Path) -> None:
    (in_tmp / "latin1.yaml").write_bytes(STEP.replace("echo", "echo \xe9t\xe9").encode("latin-1"))
    code, out = wfe("validate", "latin1.yaml")
    assert code == 1
    assert out == "latin1.yaml:5:26: the file is not valid UTF-8 (byte 0xe9 here)\n"


def test_non_utf8_include_names_its_own_line_and_column(in_tmp: Path) -> None:
    (in_tmp / "other.yaml").write_bytes(b"# caf\xc3\xa9 ok\nworkflow: {id: \xff}\n")
    (in_tmp / "main.yaml").write_text("include: other.yaml\n" + STEP)
    code, out = wfe("validate", "main.yaml")
    assert code == 1
    assert out == f"{in_tmp / 'other.yaml'}:2:16: the file is not valid UTF-8 (byte 0xff here)\n"


# -- 11: aliases expand within a budget ------------------------------------------------------


def _laughs(levels: int) -> str:
    """The classic "billion laughs": anchor ``aN`` is ten aliases of ``aN-1``."""
    lines = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "_laughs:\n" + "\n".join(lines) + f"\n{STEP}        env: {{X: *a{levels}}}\n"


def test_nested_aliases_are_refused_at_the_alias_that_goes_over(in_tmp: Path) -> None:
    # Six levels used to take ten seconds of CPU, eight never ended; now it is refused while
    # parsing, at the alias where the expansion passes 100,000 values.
    (in_tmp / "laughs.yaml").write_text(_laughs(8))
    code, out = wfe("validate", "laughs.yaml")
    assert code == 1
    assert out == (
        "laughs.yaml:6:40: alias *a3 expands the YAML to more than 100,000 values "
        "(an alias counts its anchor's whole value each time it is used)\n"
    )


def test_the_same_bomb_through_a_merge_key_is_refused(in_tmp: Path) -> None:
    levels = ["_m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}"]
    for i in range(1, 8):
        keys = ", ".join(f"k{k}: *m{i - 1}" for k in range(10))
        levels.append(f"_m{i}: &m{i} {{<<: *m{i - 1}, {keys}}}")
    (in_tmp / "merge.yaml").write_text("\n".join(levels) + "\n" + STEP)
    code, out = wfe("validate", "merge.yaml")
    assert code == 1
    assert out == (
        "merge.yaml:5:33: alias *m3 expands the YAML to more than 100,000 values "
        "(an alias counts its anchor's whole value each time it is used)\n"
    )


def test_a_long_text_repeated_by_aliases_is_refused(in_tmp: Path) -> None:
    text = "_big: &big '" + "x" * 1_000_000 + "'\n_copies: [" + ", ".join(["*big"] * 11) + "]\n"
    (in_tmp / "text.yaml").write_text(text + STEP)
    code, out = wfe("validate", "text.yaml")
    assert code == 1
    assert out == (
        "text.yaml:2:65: alias *big expands the YAML to more than 10,485,760 characters of "
        "text (an alias counts its anchor's whole value each time it is used)\n"
    )


def test_a_recursive_alias_is_refused(in_tmp: Path) -> None:
    (in_tmp / "loop.yaml").write_text("_loop: &loop [1, *loop]\n" + STEP)
    code, out = wfe("validate", "loop.yaml")
    assert code == 1
    assert out == (
        "loop.yaml:1:18: alias *loop is used inside its own anchor: recursive YAML data "
        "is not supported\n"
    )


def test_anchors_aliases_and_merge_keys_within_the_budget_work(in_tmp: Path) -> None:
    (in_tmp / "defaults.yaml").write_text(
        "_defaults: &defaults\n"
        "  shell: bash\n"
        "  env: &env {GREETING: hello}\n"
        "workflow:\n"
        "  id: merged\n"
        "  steps:\n"
        "    - name: a\n"
        "      config:\n"
        "        <<: *defaults\n"
        '        run: echo "$GREETING from a"\n'
        "    - name: b\n"
        "      config: {<<: *defaults, env: *env, run: 'echo \"$GREETING from b\"'}\n"
    )
    result = CliRunner().invoke(main, ["run", "--timeout", "60", "defaults.yaml"])
    assert result.exit_code == 0, result.output
    assert "a │ hello from a" in result.stdout
    assert "b │ hello from b" in result.stdout


# -- 14: numbers and durations fit what runs and stores them ---------------------------------


def test_durations_longer_than_365_days_are_problems_at_their_place(in_tmp: Path) -> None:
    (in_tmp / "long.yaml").write_text(
        "workflow:\n"
        "  id: long\n"
        "  steps:\n"
        "    - name: a\n"
        "      config: {run: echo, timeout: 99999999999h}\n"
        "    - name: b\n"
        "      config: {run: echo, timeout: 8761h}\n"
        "    - name: c\n"
        "      config: {run: echo, timeout: 8760h}\n"
        "      error_behavior: {type: retry, interval: 9999999999999999m, backoff: .inf}\n"
    )
    code, out = wfe("validate", "long.yaml")
    assert code == 1
    assert out.splitlines() == [
        "long.yaml:5:36: step 'a': timeout: duration '99999999999h' is too long: at most 8760h",
        "long.yaml:7:36: step 'b': timeout: duration '8761h' is too long: at most 8760h",
        "long.yaml:10:47: `interval`: duration '9999999999999999m' is too long: at most 8760h",
        "long.yaml:10:75: `backoff` must be a number >= 1 and at most 1000",
    ]


@pytest.mark.parametrize("version", ["9223372036854775808", "2147483648"])
def test_a_version_too_large_for_the_store_is_refused_before_anything_is_stored(
    in_tmp: Path, version: str
) -> None:
    (in_tmp / "v.yaml").write_text(STEP.replace("  id: x\n", f"  id: x\n  version: {version}\n"))
    result = CliRunner().invoke(main, ["run", "--timeout", "60", "v.yaml"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 1 problem in YAML workflow:\n  v.yaml:3:12: `version` must be at most 2147483647\n"
    )
    assert not (in_tmp / ".wfe").exists()


def test_the_largest_version_runs(in_tmp: Path) -> None:
    (in_tmp / "v.yaml").write_text(STEP.replace("  id: x\n", "  id: x\n  version: 2147483647\n"))
    result = CliRunner().invoke(main, ["run", "--timeout", "60", "v.yaml"])
    assert result.exit_code == 0, result.output
    assert "✓ x v2147483647 complete" in result.stdout


def test_graph_to_a_missing_directory_is_one_error_line(in_tmp: Path) -> None:
    (in_tmp / "g.yaml").write_text(STEP)
    result = CliRunner().invoke(main, ["graph", "g.yaml", "-o", "missing/dir/x.mmd"])
    assert result.exit_code == 1
    assert result.stderr == "Error: cannot write missing/dir/x.mmd: No such file or directory\n"


@pytest.mark.parametrize("timeout", ["nan", "inf", "1e300", "0"])
def test_run_timeout_must_be_finite_and_at_most_a_year(in_tmp: Path, timeout: str) -> None:
    (in_tmp / "t.yaml").write_text(STEP)
    result = CliRunner().invoke(main, ["run", "--timeout", timeout, "t.yaml"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--timeout': must be a finite number of seconds > 0 and "
        f"at most 31536000, got {float(timeout)!r}"
    )
    assert not (in_tmp / ".wfe").exists()  # refused before anything was started


def test_an_integer_of_more_than_4300_digits_is_a_problem_at_its_place(in_tmp: Path) -> None:
    (in_tmp / "digits.yaml").write_text(
        STEP.replace("  id: x\n", f"  id: x\n  version: {'9' * 4301}\n")
    )
    code, out = wfe("validate", "digits.yaml")
    assert code == 1
    assert out == "digits.yaml:3:12: an integer of more than 4300 digits is not supported\n"
