"""``wfe run``, ``wfe validate`` and ``wfe graph`` on YAML files, through the real CLI."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from wfe_host.cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "pipelines"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every command runs in a scratch directory (the default store is ./.wfe/wfe.db)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WFE_") and name not in ("WFE_DENO_BIN",):
            monkeypatch.delenv(name)
    # Colours are what a test asks for, not what the developer's shell or CI sets.
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    return tmp_path


def wfe(*args: str) -> tuple[int, str]:
    argv = list(args)
    if "run" in argv:
        # A hang fails the test instead of stalling the suite.
        argv[argv.index("run") + 1 : argv.index("run") + 1] = ["--timeout", "120"]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    return result.exit_code, result.output


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_run_shows_progress_and_output(in_tmp: Path) -> None:
    code, out = wfe("run", str(EXAMPLES / "hello.yaml"), "--input", "who=world")
    assert code == 0, out
    assert "Running hello v1" in out
    assert "▶ Greet" in out
    assert "Greet │ Hello, world!" in out
    assert "✓ Greet (" in out
    assert "✓ hello v1 complete in" in out
    # No TTY here: plain lines, no escape sequences.
    assert "\x1b[" not in out
    try:
        import wfe_sqlite  # noqa: F401
    except ImportError:  # no SQLite provider installed: the CLI falls back to memory
        assert "in memory" in out
    else:
        assert (in_tmp / ".wfe" / "wfe.db").is_file()


def test_run_fails_with_exit_status_1(in_tmp: Path) -> None:
    file = write(
        in_tmp / "fail.yaml",
        "workflow:\n  id: fail\n  steps:\n    - name: Boom\n"
        "      config: {run: 'echo bad >&2; exit 3'}\n"
        "      ensure: {name: Tidy, config: {run: echo tidy}}\n",
    )
    code, out = wfe("--persistence", "memory", "run", str(file))
    assert code == 1, out
    assert "Boom │ bad" in out
    assert "✗ Boom failed" in out
    assert "exited with code 3: bad" in out
    assert "✓ Tidy" in out
    assert "✗ fail v1 failed after" in out


def test_run_shows_skipped_steps_and_child_workflows(in_tmp: Path) -> None:
    file = write(
        in_tmp / "flow.yaml",
        "workflows:\n  - id: main\n    inputs: {go: boolean}\n    steps:\n"
        "      - name: Maybe\n        when: {field: inputs.go, equals: true}\n"
        "        config: {run: echo maybe}\n"
        "      - name: Child\n        type: workflow\n        config: {workflow: child}\n"
        "  - id: child\n    steps:\n      - name: Inner\n        config: {run: echo inner}\n",
    )
    code, out = wfe("--persistence", "memory", "run", str(file), "-i", "go=false")
    assert code == 0, out
    assert "○ Maybe skipped" in out
    assert "started workflow child v1" in out
    assert "child > Inner │ inner" in out


def test_run_bad_usage(in_tmp: Path) -> None:
    code, out = wfe("run", "missing.yaml")
    assert code == 1
    assert "no such file" in out
    file = write(
        in_tmp / "ok.yaml",
        "workflow:\n  id: ok\n  steps:\n    - {name: A, config: {run: 'true'}}\n",
    )
    code, out = wfe("run", str(file), "--input", "novalue")
    assert code == 2
    assert "expected KEY=VALUE" in out
    code, out = wfe("run", str(file), "--workflow", "other")
    assert code == 1
    assert "no workflow 'other' in the file (it has: ok)" in out


def test_run_refuses_missing_or_bad_inputs_before_storing_anything(in_tmp: Path) -> None:
    hello = str(EXAMPLES / "hello.yaml")
    code, out = wfe("run", hello)
    assert code == 2
    assert "input 'who' (string) is missing (pass --input KEY=VALUE)" in out
    typed = write(
        in_tmp / "typed.yaml",
        "workflow:\n  id: typed\n  inputs: {n: integer}\n"
        "  steps:\n    - {name: A, config: {run: 'true'}}\n",
    )
    code, out = wfe("run", str(typed), "--input", "n=many")
    assert code == 2
    assert "input 'n': expected an integer, got 'many'" in out
    code, out = wfe("workflows", "list", "--json")
    assert code == 0, out
    assert json.loads(out)["total"] == 0


def test_validate_prints_every_problem(in_tmp: Path) -> None:
    bad = write(
        in_tmp / "bad.yaml",
        "workflow:\n  id: x\n  steps:\n    - name: A\n      config: {run: echo, timeout: 5}\n"
        "    - name: A\n      typo: 1\n      config: {run: echo}\n",
    )
    code, out = wfe("validate", str(bad), str(EXAMPLES / "hello.yaml"))
    assert code == 1
    lines = out.splitlines()
    assert (
        f"{bad}:5:36: step 'A': timeout: bad duration 5: expected e.g. 250ms, 5s, 1.5s, 2m, "
        "1h30m (write 5s for seconds)"
    ) in (lines)
    assert any(line.startswith(f"{bad}:6:7: duplicate step name 'A'") for line in lines)
    assert any(line.startswith(f"{bad}:7:7: unknown key 'typo'") for line in lines)
    assert f"{EXAMPLES / 'hello.yaml'}: ok (hello v1)" in lines
    assert "3 problems found" in out


def test_validate_needs_set_values() -> None:
    everything = str(EXAMPLES / "everything.yaml")
    code, out = wfe("validate", everything)
    assert code == 1
    assert "load-time value 'env' is not set (pass --set env=...; given: none)" in out
    code, out = wfe("validate", everything, "--set", "env=staging")
    assert code == 0, out


def test_graph_mermaid_and_dot() -> None:
    everything = str(EXAMPLES / "everything.yaml")
    code, out = wfe("graph", everything, "--set", "env=staging")
    assert code == 0, out
    assert "flowchart TD" in out
    assert "subgraph" in out
    assert '["Tests"]' in out
    assert "-.->|on failure|" in out
    assert "-.->|ensure|" in out
    assert '[["Release"]]' in out
    assert "Check inputs" not in out
    code, dot = wfe("graph", everything, "--set", "env=staging", "--format", "dot")
    assert code == 0, dot
    assert dot.startswith('digraph "everything v1" {')
    assert 'label="on failure", style=dashed' in dot
    code, child = wfe("graph", everything, "-s", "env=x", "-f", "dot", "-w", "release")
    assert code == 0
    assert '"release v2"' in child


def test_graph_svg(in_tmp: Path) -> None:
    target = in_tmp / "hello.svg"
    code, out = wfe("graph", str(EXAMPLES / "hello.yaml"), "-f", "svg", "-o", str(target))
    if shutil.which("dot") is None:
        assert code == 1
        assert "SVG needs Graphviz" in out
    else:
        assert code == 0, out
        assert "<svg" in target.read_text()


def _example_args(path: Path) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith("# test:"):
            return shlex.split(line.removeprefix("# test:"))
    raise AssertionError(f"{path.name} has no '# test:' line")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_pipelines_run(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_EXAMPLE_USER", "ci")
    code, out = wfe("--persistence", "memory", "run", str(example), *_example_args(example))
    assert code == 0, out
    assert "complete in" in out


def _wfe_process(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wfe_host", *args, "--timeout", "120"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_killed_run_resumes_where_it_stopped(in_tmp: Path) -> None:
    pytest.importorskip("wfe_sqlite")
    file = write(
        in_tmp / "resume.yaml",
        f"""
workflow:
  id: resume
  steps:
    - name: First
      config: {{run: 'echo once >> {in_tmp}/first.log'}}
    - name: Second
      config:
        run: |
          echo run >> {in_tmp}/second.log
          if [ "$(wc -l < {in_tmp}/second.log)" -lt 2 ]; then sleep 60; fi
          echo "done=yes" >> "$WFE_OUTPUT"
""",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env["WFE_HOST_LEASE_SECONDS"] = "1"
    first = _wfe_process(["run", str(file), "--plain"], in_tmp, env)
    deadline = time.monotonic() + 60
    while not (in_tmp / "second.log").exists():
        assert time.monotonic() < deadline, "the second step never started"
        assert first.poll() is None, first.communicate()[0]
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    second = _wfe_process(["run", str(file), "--plain"], in_tmp, env)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    assert "Resuming resume v1" in out
    assert (in_tmp / "first.log").read_text() == "once\n"  # completed steps do not run again
    assert (in_tmp / "second.log").read_text() == "run\nrun\n"  # the interrupted one does
    # A later run is a new one: the previous run finished.
    third = _wfe_process(["run", str(file), "--plain"], in_tmp, env)
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0, out
    assert "Running resume v1" in out
    assert "Terminated" not in out


def test_a_changed_file_supersedes_the_unfinished_run(in_tmp: Path) -> None:
    pytest.importorskip("wfe_sqlite")
    file = write(
        in_tmp / "stale.yaml",
        "workflow:\n  id: stale\n  steps:\n    - name: Wait\n"
        "      error_behavior: suspend\n      config: {run: exit 1}\n",
    )
    code, out = wfe("run", str(file))
    assert code == 3, out
    assert "suspended" in out
    file.write_text(file.read_text().replace("exit 1", "echo fixed"))
    code, out = wfe("run", str(file))
    assert code == 0, out
    assert "Terminated the unfinished earlier run" in out
    assert "Wait │ fixed" in out


def run_on_a_terminal(in_tmp: Path, file: Path, env_extra: dict[str, str] | None = None) -> str:
    """``wfe run FILE`` with a pseudo-terminal as its stdout and stderr; what it printed."""
    import pty
    import select

    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    env.update({"COLUMNS": "100", "TERM": "xterm", **(env_extra or {})})
    process = subprocess.Popen(
        [sys.executable, "-m", "wfe_host", "--persistence", "memory", "run", str(file)],
        cwd=in_tmp,
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(primary)
    assert process.wait(timeout=30) == 0
    return output.decode(errors="replace")


def test_live_progress_on_a_terminal(in_tmp: Path) -> None:
    file = write(
        in_tmp / "tty.yaml",
        "workflow:\n  id: tty\n  steps:\n    - name: Slow\n"
        "      config: {run: 'echo start; sleep 0.6; echo end'}\n",
    )
    text = run_on_a_terminal(in_tmp, file)
    assert "\x1b[" in text  # colors and the status line
    assert "running: Slow" in text  # the status line while the step runs
    assert "Slow" in text
    assert "end" in text
    assert "complete in" in text


def test_no_color_on_a_terminal_keeps_the_status_line_without_colours(in_tmp: Path) -> None:
    file = write(
        in_tmp / "tty.yaml",
        "workflow:\n  id: tty\n  steps:\n    - name: Slow\n"
        "      config: {run: 'echo start; sleep 0.6; echo end'}\n",
    )
    text = run_on_a_terminal(in_tmp, file, {"NO_COLOR": "1"})
    assert "running: Slow" in text
    assert "complete in" in text
    # Only the erasing of the status line is left: no colour codes.
    assert "\x1b[" not in text.replace("\x1b[2K", "")


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    argv = list(args)
    if "run" in argv and "--timeout" not in argv:
        argv[argv.index("run") + 1 : argv.index("run") + 1] = ["--timeout", "120"]
    return CliRunner().invoke(main, argv, env=env, catch_exceptions=False)


def test_force_color_colours_run_output_that_is_not_a_terminal(in_tmp: Path) -> None:
    hello = str(EXAMPLES / "hello.yaml")
    result = invoke(
        "--persistence", "memory", "run", hello, "-i", "who=x", env={"FORCE_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert "\x1b[32m✓ hello v1 complete in" in result.stdout
    assert "running:" not in result.stdout  # colours, but no status line off a terminal
    plain = invoke(
        "--persistence",
        "memory",
        "run",
        hello,
        "-i",
        "who=x",
        env={"FORCE_COLOR": "1", "NO_COLOR": "1"},
    )
    assert "\x1b[" not in plain.stdout


OUTPUTS_FILE = (
    "workflow:\n  id: out\n  outputs: {greeting: string, count: integer}\n  steps:\n"
    "    - name: Make\n"
    '      config: {run: \'echo making; echo greeting=hi there >> "$WFE_OUTPUT"; '
    'echo 3 > "$WFE_OUTPUTS/count"\'}\n'
    "      ensure: {name: Tidy, config: {run: echo tidy}}\n"
    "    - {name: Last, config: {run: 'true'}}\n"
)


def test_run_prints_the_declared_outputs_when_it_completes(in_tmp: Path) -> None:
    file = write(in_tmp / "out.yaml", OUTPUTS_FILE)
    code, out = wfe("--persistence", "memory", "run", str(file))
    assert code == 0, out
    assert out.endswith("Outputs:\n  greeting  hi there\n  count     3\n"), out


def test_run_json_prints_one_summary_and_nothing_else_on_stdout(in_tmp: Path) -> None:
    file = write(in_tmp / "out.yaml", OUTPUTS_FILE)
    result = invoke("--persistence", "memory", "run", str(file), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete"
    assert summary["outputs"] == {"greeting": "hi there", "count": 3}
    assert summary["error"] is None
    # The user's steps in the order they ran, without the guard, phases and outputs check.
    assert [s["name"] for s in summary["steps"]] == ["Make", "Tidy", "Last"]
    make = summary["steps"][0]
    assert (make["status"], make["attempts"], make["error"]) == ("complete", 1, None)
    assert make["duration"] >= 0
    # The progress went to stderr.
    assert "Make │ making" in result.stderr
    assert "✓ out v1 complete in" in result.stderr


def test_run_json_of_a_failed_run_names_the_step_and_its_error(in_tmp: Path) -> None:
    file = write(
        in_tmp / "fail.yaml",
        "workflow:\n  id: fail\n  steps:\n    - name: Boom\n"
        "      error_behavior: {type: retry, interval: 10ms, max_retries: 1}\n"
        "      config: {run: 'echo bad >&2; exit 3'}\n",
    )
    result = invoke("--persistence", "memory", "run", str(file), "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed"
    assert "exited with code 3: bad" in summary["error"]
    (boom,) = summary["steps"]
    assert boom["name"] == "Boom"
    assert boom["status"] == "failed"
    assert boom["attempts"] == 2
    assert "exited with code 3" in boom["error"]


def test_a_timeout_has_its_own_exit_status(in_tmp: Path) -> None:
    file = write(
        in_tmp / "slow.yaml",
        "workflow:\n  id: slow\n  steps:\n    - {name: Nap, config: {run: 'sleep 30'}}\n",
    )
    started = time.monotonic()
    result = invoke("run", str(file), "--timeout", "0.5", "--json")
    assert result.exit_code == 4, result.output
    assert time.monotonic() - started < 25  # the sleeping step was stopped, not waited for
    assert "⏱ slow v1 still runnable after --timeout 0.50s" in result.stderr
    assert "run the same command again to resume it" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "timeout"
    assert [(s["name"], s["status"]) for s in summary["steps"]] == [("Nap", "running")]


def test_an_unknown_input_is_refused_with_did_you_mean(in_tmp: Path) -> None:
    hello = str(EXAMPLES / "hello.yaml")
    code, out = wfe("run", hello, "--input", "who=x", "--input", "whoo=y", "-i", "zzz=1")
    assert code == 2, out
    assert (
        "Invalid value for --input: unknown input 'whoo' (did you mean 'who'?); unknown input "
        "'zzz'; hello declares: who"
    ) in out
    code, out = wfe("workflows", "list", "--json")
    assert json.loads(out)["total"] == 0  # refused before anything was stored


def progress_in_order(out: str) -> None:
    """Every output line of a step comes after the step's start line."""
    lines = out.splitlines()
    for index, line in enumerate(lines):
        if " │ " in line:
            step = line.split(" │ ")[0].strip()
            assert f"▶ {step}" in lines[:index], f"{line!r} before its start line:\n{out}"


def test_a_steps_start_line_comes_before_its_output(in_tmp: Path) -> None:
    many = write(
        in_tmp / "many.yaml",
        "workflow:\n  id: many\n  steps:\n"
        + "".join(f"    - {{name: S{i}, config: {{run: echo out{i}}}}}\n" for i in range(8)),
    )
    code, out = wfe("run", str(many))
    assert code == 0, out
    progress_in_order(out)
    code, out = wfe("run", str(EXAMPLES / "python-package.yaml"))
    assert code == 0, out
    assert "Clean up │ cleaning" in out
    progress_in_order(out)


def validation_tree(root: Path) -> Path:
    """``flows/`` with a good file, a bad ``.yml`` one level down and a hidden bad one."""
    flows = root / "flows"
    (flows / "sub").mkdir(parents=True)
    (flows / ".hidden").mkdir()
    shutil.copy(EXAMPLES / "hello.yaml", flows / "hello.yaml")
    bad = (
        "workflow:\n  id: x\n  steps:\n    - name: A\n      typo: 1\n"
        "      config: {run: 'echo a, b: c'}\n"
    )
    write(flows / "sub" / "bad.yml", bad)
    write(flows / ".hidden" / "bad.yaml", bad)
    write(flows / "notes.txt", "not a workflow")
    return flows


def test_validate_takes_directories_and_globs(in_tmp: Path) -> None:
    validation_tree(in_tmp)
    code, out = wfe("validate", "flows")
    assert code == 1
    assert out.splitlines() == [
        "flows/hello.yaml: ok (hello v1)",
        "flows/sub/bad.yml:5:7: unknown key 'typo' in step (did you mean 'type'?)",
        "1 problem found",
    ]
    code, out = wfe("validate", "flows/*.yaml")
    assert (code, out) == (0, "flows/hello.yaml: ok (hello v1)\n")
    code, out = wfe("validate", "flows/**/*.yml", "nothing/*.yaml")
    assert code == 1
    assert "flows/sub/bad.yml:5:7: unknown key 'typo'" in out
    assert "nothing/*.yaml: no files match this pattern" in out
    (in_tmp / "empty").mkdir()
    write(in_tmp / "empty" / "x.txt", "")
    code, out = wfe("validate", "empty")
    assert code == 1
    assert "empty: no definition files in directory empty" in out


def test_validate_json_lists_every_problem(in_tmp: Path) -> None:
    validation_tree(in_tmp)
    result = invoke("validate", "--json", "flows", "missing.yaml")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "file": "flows/sub/bad.yml",
            "line": 5,
            "column": 7,
            "message": "unknown key 'typo' in step (did you mean 'type'?)",
        },
        {
            "file": "missing.yaml",
            "line": None,
            "column": None,
            "message": "no such file: missing.yaml",
        },
    ]
    assert result.stderr == "2 problems found\n"
    ok = invoke("validate", "--format", "json", "flows/hello.yaml")
    assert (ok.exit_code, json.loads(ok.stdout)) == (0, [])


def test_validate_format_github_prints_annotations(in_tmp: Path) -> None:
    flows = validation_tree(in_tmp)
    write(
        flows / "a,b.yaml",
        "workflow:\n  id: y\n  steps:\n    - {name: 'a,b', config: {run: echo}, when: 3}\n",
    )
    result = invoke("validate", "--format", "github", "flows")
    assert result.exit_code == 1
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    # Files in name order; a comma in a property is escaped, or GitHub would end the file
    # name there.
    assert annotations == [
        "::error file=flows/a%2Cb.yaml,line=4,col=48::a condition must be a mapping, e.g. "
        "{field: inputs.branch, equals: main}",
        "::error file=flows/sub/bad.yml,line=5,col=7::unknown key 'typo' in step "
        "(did you mean 'type'?)",
    ]
    assert "flows/hello.yaml: ok (hello v1)" in result.stdout


def test_workflows_show_lists_the_users_steps_in_order_and_all_with_all(in_tmp: Path) -> None:
    file = write(in_tmp / "out.yaml", OUTPUTS_FILE)
    result = invoke("run", str(file), "--json")
    assert result.exit_code == 0, result.output
    workflow_id = json.loads(result.stdout)["workflow_id"]
    code, out = wfe("workflows", "show", workflow_id[:10])
    assert code == 0, out
    steps = out.split("Steps:\n", 1)[1].splitlines()
    names = [line.split()[1] for line in steps[1:] if line[:1].isdigit()]
    assert names == ["Make", "Tidy", "Last"]
    # The guard, the (main) and (ensure) phases around Make (each visited for both of the
    # guard's phases), and the outputs check.
    assert "(6 internal steps not shown; --all shows them)" in steps
    code, out = wfe("workflows", "show", workflow_id, "--all")
    assert code == 0, out
    listed = out.split("Steps:\n", 1)[1]
    for internal in ("Make (main)", "Make (ensure)", "Check outputs"):
        assert internal in listed
    assert "not shown" not in listed
    code, out = wfe("workflows", "show", workflow_id, "--json")
    pointers = json.loads(out)["pointers"]
    internal = [p["step_name"] for p in pointers if p["extensions"].get("wfe.internal")]
    assert sorted(set(internal)) == ["Check outputs", "Make", "Make (ensure)", "Make (main)"]
