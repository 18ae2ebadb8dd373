"""End-to-end runs of shell steps: real processes, outputs, hooks, conditions, parallelism."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core.errors import InvalidInputError
from wfe_core.models import PointerStatus, WorkflowStatus
from wfe_host import WorkflowHost
from wfe_yaml import load_workflows_from_str
from wfe_yaml_support import pointers, result_of, run_yaml

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

EVIL = "$(touch {canary}); `touch {canary}`; rm -rf ~ ; echo \"$HOME\" '$x' \\"


async def test_outputs_stay_strings_and_results_are_recorded() -> None:
    instance = await run_yaml(
        """
workflow:
  id: out
  outputs: {count: integer, version: string}
  steps:
    - name: Build
      config:
        run: |
          echo "building"
          echo "version=1.10" >> "$WFE_OUTPUT"
          echo "raw=1.10" >> "$WFE_OUTPUT"
          echo "count=3" >> "$WFE_OUTPUT"
          echo "warning: careful" >&2
"""
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data == {"version": "1.10", "raw": "1.10", "count": 3}
    result = result_of(instance, "Build")
    assert result["exit_code"] == 0
    assert result["stdout"] == "building"  # output commands are not part of the output
    assert result["stderr"] == "warning: careful"


async def test_a_failing_command_fails_the_workflow_with_its_exit_code() -> None:
    instance = await run_yaml(
        "workflow:\n  id: f\n  steps:\n    - name: Boom\n"
        "      config: {run: 'echo some output; echo the reason >&2; exit 3'}\n"
        "    - name: Never\n      config: {run: echo never}\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    [boom] = pointers(instance, "Boom")
    assert boom.status == PointerStatus.FAILED
    assert boom.error == "StepFailedError: exited with code 3: the reason"
    assert boom.extensions["result"]["exit_code"] == 3
    assert boom.extensions["result"]["stdout"] == "some output"
    assert not pointers(instance, "Never")


async def test_pipefail_and_errexit() -> None:
    instance = await run_yaml(
        "workflow:\n  id: f\n  steps:\n    - name: Pipe\n"
        "      config: {run: 'false | cat; echo not reached'}\n"
    )
    assert instance.status == WorkflowStatus.FAILED
    assert "not reached" not in result_of(instance, "Pipe")["stdout"]


@pytest.mark.parametrize("quoting", ["bare", "double", "single", "env"])
async def test_data_is_never_executed(tmp_path: Path, quoting: str) -> None:
    canary = tmp_path / "pwned"
    value = EVIL.format(canary=canary)
    run = {
        "bare": "echo ${{ inputs.x }}",
        "double": 'echo "x=${{ inputs.x }}"',
        "single": "echo 'x=${{ inputs.x }}'",
        "env": 'echo "$WFE_DATA_X"; echo "$VIA_ENV"',
    }[quoting]
    instance = await run_yaml(
        f"""
workflow:
  id: inject
  inputs: {{x: string}}
  steps:
    - name: Echo
      config:
        run: {run!r}
        env: {{VIA_ENV: "${{{{ inputs.x }}}}"}}
""".replace("{run!r}", repr(run).replace("\\\\", "\\")),
        {"x": value},
    )
    assert instance.status == WorkflowStatus.COMPLETE, instance.pointers
    assert not canary.exists()
    stdout = result_of(instance, "Echo")["stdout"]
    assert value in stdout
    assert _home_exists()


async def test_workflow_data_in_the_environment(tmp_path: Path) -> None:
    instance = await run_yaml(
        """
workflow:
  id: env
  inputs: {name: string, n: integer}
  steps:
    - name: Show
      config:
        shell: sh
        working_dir: WORKDIR
        env: {GREETING: "hello ${{ inputs.name }}"}
        run: |
          echo "$GREETING"
          echo "$WFE_DATA_N"
          echo "$WFE_DATA"
          pwd
""".replace("WORKDIR", str(tmp_path)),
        {"name": "ada", "n": "7"},
    )
    assert instance.status == WorkflowStatus.COMPLETE
    lines = result_of(instance, "Show")["stdout"].splitlines()
    assert lines == ["hello ada", "7", '{"name": "ada", "n": 7}', str(tmp_path)]


async def test_script_file(tmp_path: Path) -> None:
    (tmp_path / "build.sh").write_text('echo "from file $WFE_DATA_WHO"\n')
    instance = await run_yaml(
        "workflow:\n  id: f\n  steps:\n    - name: F\n      config: {file: build.sh}\n",
        {"who": "me"},
        base_dir=tmp_path,
    )
    assert result_of(instance, "F")["stdout"] == "from file me"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    instance = await run_yaml(
        f"""
workflow:
  id: slow
  steps:
    - name: Slow
      config:
        timeout: 500ms
        run: |
          sleep 60 &
          echo $! > {pid_file}
          sleep 60
"""
    )
    assert time.monotonic() - started < 20
    assert instance.status == WorkflowStatus.FAILED
    [slow] = pointers(instance, "Slow")
    assert "timed out after 500ms" in (slow.error or "")
    assert slow.extensions["result"]["timed_out"] is True
    child = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        await anyio.sleep(0.1)
    assert not _alive(child)


def _home_exists() -> bool:
    return os.path.isdir(os.path.expanduser("~"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent to reap it.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


async def test_background_children_do_not_hold_the_step(tmp_path: Path) -> None:
    started = time.monotonic()
    instance = await run_yaml(
        "workflow:\n  id: bg\n  steps:\n    - name: Bg\n      config: {run: 'sleep 60 & echo ok'}\n"
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert time.monotonic() - started < 15


async def test_parallel_children_run_concurrently(tmp_path: Path) -> None:
    # Each branch waits until the other has started: only concurrent branches finish.
    instance = await run_yaml(
        f"""
workflow:
  id: par
  steps:
    - name: Both
      parallel:
        - name: Left
          config:
            timeout: 20s
            run: touch {tmp_path}/left; while [ ! -e {tmp_path}/right ]; do sleep 0.05; done
        - name: Right
          config:
            timeout: 20s
            run: touch {tmp_path}/right; while [ ! -e {tmp_path}/left ]; do sleep 0.05; done
    - name: After
      config: {{run: echo after}}
"""
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert result_of(instance, "After")["stdout"] == "after"


async def test_when_conditions() -> None:
    text = """
workflow:
  id: cond
  inputs: {branch: string, n: integer?}
  steps:
    - name: OnMain
      when: {field: inputs.branch, equals: main}
      config: {run: echo main}
    - name: Big
      when:
        all:
          - {field: inputs.n, gte: 10}
          - not: {field: inputs.branch, contains: wip}
          - any: [{field: inputs.n, lt: 100}, {field: inputs.n, is_null: true}]
      config: {run: echo big}
    - name: NoN
      when: {field: inputs.n, is_null: true}
      config: {run: echo none}
"""
    instance = await run_yaml(text, {"branch": "main", "n": "12"})
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data == {"branch": "main", "n": 12}
    assert result_of(instance, "OnMain")["stdout"] == "main"
    assert result_of(instance, "Big")["stdout"] == "big"
    assert result_of(instance, "NoN") == {"skipped": True}
    instance = await run_yaml(text, {"branch": "wip-1"})
    assert result_of(instance, "OnMain") == {"skipped": True}
    assert result_of(instance, "Big") == {"skipped": True}
    assert result_of(instance, "NoN")["stdout"] == "none"


async def test_inputs_are_checked_on_start() -> None:
    text = (
        "workflow:\n  id: typed\n  inputs: {n: integer, flag: boolean?}\n  steps:\n"
        "    - name: A\n      config: {run: echo}\n"
    )
    (definition,) = load_workflows_from_str(text)
    async with WorkflowHost() as host:
        host.register(definition)
        # Refused before anything is stored: a run that could not work never starts.
        with pytest.raises(InvalidInputError) as bad:
            await host.start_workflow("typed", {"n": "many"})
        assert bad.value.problems == ["input 'n': expected an integer, got 'many'"]
        with pytest.raises(InvalidInputError, match=r"input 'n' \(integer\) is missing"):
            await host.start_workflow("typed", {})
        assert (await host.list_workflows()).total == 0
    good = await run_yaml(text, {"n": "4", "flag": "true"})
    assert good.data == {"n": 4, "flag": True}


async def test_ensure_and_on_failure_run_when_the_step_fails() -> None:
    instance = await run_yaml(
        """
workflow:
  id: hooks
  steps:
    - name: Build
      config: {run: 'echo building; exit 2'}
      on_success: {name: Celebrate, config: {run: echo yay}}
      on_failure: {name: Report, config: {run: 'echo "reporting"'}}
      ensure:
        - {name: Cleanup, config: {run: echo cleaning}}
        - {name: Cleanup2, config: {run: echo more}}
    - name: Never
      config: {run: echo never}
"""
    )
    assert instance.status == WorkflowStatus.FAILED
    assert result_of(instance, "Report")["stdout"] == "reporting"
    assert result_of(instance, "Cleanup")["stdout"] == "cleaning"
    assert result_of(instance, "Cleanup2")["stdout"] == "more"
    assert not pointers(instance, "Celebrate")
    assert not pointers(instance, "Never")
    errors = [p.error for p in instance.pointers if p.status == PointerStatus.FAILED]
    assert any(
        "step Build failed" in (e or "") and "exited with code 2" in (e or "") for e in errors
    )


async def test_ensure_and_on_success_run_when_the_step_succeeds() -> None:
    instance = await run_yaml(
        """
workflow:
  id: hooks
  steps:
    - name: Build
      config: {run: echo building}
      on_success: {name: Celebrate, config: {run: echo yay}}
      on_failure: {name: Report, config: {run: echo reporting}}
      ensure: {name: Cleanup, config: {run: echo cleaning}}
    - name: Next
      config: {run: echo next}
"""
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert result_of(instance, "Celebrate")["stdout"] == "yay"
    assert result_of(instance, "Cleanup")["stdout"] == "cleaning"
    assert result_of(instance, "Next")["stdout"] == "next"
    assert not pointers(instance, "Report")


async def test_ensure_runs_after_a_failing_parallel_branch() -> None:
    instance = await run_yaml(
        """
workflow:
  id: hooks
  steps:
    - name: Tests
      parallel:
        - {name: Ok, config: {run: echo ok}}
        - {name: Bad, config: {run: exit 1}}
      ensure: {name: Cleanup, config: {run: echo cleaning}}
"""
    )
    assert instance.status == WorkflowStatus.FAILED
    assert result_of(instance, "Cleanup")["stdout"] == "cleaning"


async def test_retry_error_behavior(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    instance = await run_yaml(
        f"""
workflow:
  id: retry
  error_behavior: {{type: retry, interval: 50ms, max_retries: 2}}
  steps:
    - name: Flaky
      config:
        run: |
          echo x >> {counter}
          [ "$(wc -l < {counter})" -ge 3 ]
"""
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert counter.read_text().count("x") == 3


async def test_retries_run_out_then_hooks_run(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    instance = await run_yaml(
        f"""
workflow:
  id: retry
  steps:
    - name: Flaky
      error_behavior: {{type: retry, interval: 10ms, max_retries: 1}}
      config: {{run: 'echo x >> {counter}; exit 1'}}
      ensure: {{name: Cleanup, config: {{run: echo cleanup}}}}
"""
    )
    assert instance.status == WorkflowStatus.FAILED
    assert counter.read_text().count("x") == 2
    assert result_of(instance, "Cleanup")["stdout"] == "cleanup"


async def test_terminate_error_behavior() -> None:
    instance = await run_yaml(
        "workflow:\n  id: t\n  steps:\n    - name: A\n      error_behavior: terminate\n"
        "      config: {run: exit 1}\n"
    )
    assert instance.status == WorkflowStatus.TERMINATED


async def test_output_lines_stream_while_the_step_runs() -> None:
    import logging

    seen: list[tuple[float, str]] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((time.monotonic(), str(getattr(record, "line", ""))))

    handler = Catch()
    logger = logging.getLogger("wfe.output")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        instance = await run_yaml(
            "workflow:\n  id: s\n  steps:\n    - name: Slow\n"
            "      config: {run: 'echo first; sleep 1; echo second >&2'}\n"
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert instance.status == WorkflowStatus.COMPLETE
    times = dict((line, at) for at, line in seen)
    assert times["second"] - times["first"] >= 0.7


async def test_terminating_the_workflow_kills_the_running_command(tmp_path: Path) -> None:
    from wfe_host import WorkflowHost
    from wfe_yaml import load_workflows_from_str

    pid_file = tmp_path / "pid"
    [definition] = load_workflows_from_str(
        "workflow:\n  id: long\n  steps:\n    - name: Long\n"
        f"      config: {{run: 'echo $$ > {pid_file}; sleep 60'}}\n"
    )
    async with WorkflowHost() as host:
        host.register(definition)
        workflow_id = await host.start_workflow("long")
        with anyio.fail_after(30):
            while not _written(pid_file):  # noqa: ASYNC110 - a file written by another process
                await anyio.sleep(0.05)
        assert await host.terminate_workflow(workflow_id)
        done = await host.wait_for_workflow(workflow_id, timeout=30)
    assert done.status == WorkflowStatus.TERMINATED
    shell_pid = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(shell_pid):
            break
        await anyio.sleep(0.1)
    assert not _alive(shell_pid)


def _written(path: Path) -> bool:
    return path.exists() and bool(path.read_text().strip())


async def test_a_skipped_step_skips_its_hooks() -> None:
    instance = await run_yaml(
        """
workflow:
  id: skip
  inputs: {go: boolean}
  steps:
    - name: Build
      when: {field: inputs.go, equals: true}
      config: {run: echo build}
      on_success: {name: Yay, config: {run: echo yay}}
      ensure: {name: Tidy, config: {run: echo tidy}}
    - name: Next
      config: {run: echo next}
""",
        {"go": "false"},
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert not pointers(instance, "Yay")
    assert not pointers(instance, "Tidy")
    assert result_of(instance, "Build") == {"skipped": True}
    assert result_of(instance, "Next")["stdout"] == "next"


async def test_a_parallel_steps_error_behavior_applies_to_its_children(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    instance = await run_yaml(
        f"""
workflow:
  id: par-retry
  steps:
    - name: Group
      error_behavior: {{type: retry, interval: 10ms, max_retries: 3}}
      parallel:
        - name: Flaky
          config: {{run: 'echo x >> {counter}; [ "$(wc -l < {counter})" -ge 3 ]'}}
        - name: Fine
          config: {{run: echo fine}}
"""
    )
    assert instance.status == WorkflowStatus.COMPLETE
    assert counter.read_text().count("x") == 3
