"""Step processes found by their token and killed: by the runner when a step ends, by the
watchdog when the runner is gone. Real processes; each test is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from wfe_core import _processes as processes
from wfe_core import _reaper

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _reaper.supported(), reason="needs Linux /proc"
)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited; it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def spawn_step(token: str) -> tuple[subprocess.Popen[str], int]:
    """A step-like process (its own session, the token in its environment) with a child that
    left its session, as ``setsid`` does; returns it and the child's pid."""
    step = subprocess.Popen(
        ["sh", "-c", "setsid sleep 300 > /dev/null 2>&1 & echo $!; exec sleep 300"],
        env=processes.environment_with_token(dict(os.environ), token),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert step.stdout is not None
    return step, int(step.stdout.readline())


def test_kill_marked_kills_only_the_tokens_processes() -> None:
    mine, other = processes.new_token(), processes.new_token()
    step, child = spawn_step(mine)
    bystander, bystander_child = spawn_step(other)
    try:
        assert _reaper.kill_marked({mine}, since=step.pid) == 2
        step.wait(timeout=30)
        assert not alive(child)
        assert alive(bystander.pid)
        assert alive(bystander_child)
    finally:
        for pid in (child, bystander_child, bystander.pid, step.pid):
            if alive(pid):
                os.kill(pid, 9)
        for process in (step, bystander):
            process.wait(timeout=30)
            assert process.stdout is not None
            process.stdout.close()


def test_the_watchdog_kills_the_registered_steps_when_its_pipe_closes() -> None:
    # Closing the pipe with a step still registered is what the runner's death looks like.
    token = processes.new_token()
    assert processes.start_watchdog()
    step, child = spawn_step(token)
    try:
        processes.step_started(step.pid, token)
        processes.stop_watchdog()  # waits for the watchdog to exit
        assert step.wait(timeout=30) == -9
        assert not alive(child)
    finally:
        processes.stop_watchdog()
        for pid in (child, step.pid):
            if alive(pid):
                os.kill(pid, 9)
        step.wait(timeout=30)
        assert step.stdout is not None
        step.stdout.close()


def read(pid: int, name: str) -> bytes | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except OSError:
        return None


def wait_until_running(pid: int, program: bytes) -> None:
    """Until ``pid`` runs ``program`` with an empty environment (bounded)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        command = read(pid, "cmdline") or b""
        if command.split(b"\0")[0] == program and read(pid, "environ") == b"":
            return
        time.sleep(0.002)
    raise AssertionError(f"{pid} never ran {program!r} with an empty environment")


def test_a_leftover_caught_between_two_programs_is_found() -> None:
    # In the middle of execve a process's environment reads empty for a moment (a `setsid`
    # becoming `sleep` just as its step ended: failed in CI that way). Stretched here: the
    # process reads empty for a while, then becomes a program carrying the token.
    token = processes.new_token()
    # (Only the shell in between: its environment reads empty until it becomes `sleep`.)
    later = f"sleep 0.3; export {processes.TOKEN_VARIABLE}={token}; exec sleep 300"
    late = subprocess.Popen(["env", "-i", "sh", "-c", later], start_new_session=True)
    try:
        wait_until_running(late.pid, b"sh")
        assert _reaper.kill_marked({token}, since=late.pid, settle=30) == 1
        assert late.wait(timeout=30) == -9
    finally:
        if late.poll() is None:
            late.kill()
            late.wait(timeout=30)


def test_a_process_with_an_empty_environment_is_not_taken_for_a_leftover() -> None:
    bystander = subprocess.Popen(["env", "-i", "sleep", "300"], start_new_session=True)
    try:
        wait_until_running(bystander.pid, b"sleep")
        assert _reaper.kill_marked({processes.new_token()}, since=bystander.pid, settle=0.05) == 0
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait(timeout=30)
