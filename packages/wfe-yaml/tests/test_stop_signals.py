"""``wfe run`` stopped by a signal, through real processes: SIGTERM lets the running step
finish (``shutdown_grace``) and releases the lease, a second signal stops at once, and a run
killed by SIGKILL is resumed at once by the next one, long before its lease would lapse (the
SQLite lock sees that the holder's process is gone). Each test is bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def clean_environ(**extra: str) -> dict[str, str]:
    """The environment without ``WFE_*`` variables (the developer's own must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(extra)
    return env


def wfe_command() -> list[str]:
    """The installed ``wfe`` script, else ``python -m wfe_host``."""
    script = Path(sys.executable).with_name("wfe")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "wfe_host"]


# First: counts its runs; on the first run it says so (a file) and takes a while; then the
# second step. A run after a kill finds "slow" and goes on at once.
PIPELINE = """
workflow:
  id: stop
  steps:
    - name: First
      config:
        run: |
          echo run >> {dir}/first-runs
          if [ -f {dir}/slow ]; then touch {dir}/started; sleep {seconds}; fi
          echo first done
    - name: Second
      config:
        run: echo second >> {dir}/second-runs
"""

# A lease that cannot lapse during a test: going on at once proves it was released (or
# taken over from a dead holder).
LEASE = "3600"


@pytest.fixture
def pipeline(tmp_path: Path) -> Callable[[float], Path]:
    pytest.importorskip("wfe_sqlite")  # a store that outlives the process

    def write(seconds: float) -> Path:
        file = tmp_path / "stop.yaml"
        file.write_text(PIPELINE.format(dir=tmp_path, seconds=seconds))
        (tmp_path / "slow").touch()
        return file

    return write


def start(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    environ = clean_environ(WFE_HOST_LEASE_SECONDS=LEASE, **env)
    return subprocess.Popen(
        [*wfe_command(), "run", "stop.yaml", "--plain", "--timeout", "60"],
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_started(tmp_path: Path, run: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline, "the step never started"
        assert run.poll() is None, run.communicate()[0]
        time.sleep(0.02)


def finish(run: subprocess.Popen[str], timeout: float = 60) -> str:
    try:
        out, _ = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        out, _ = run.communicate()
        raise AssertionError(f"still running after {timeout} s:\n{out}") from None
    return out


def runs(tmp_path: Path, name: str) -> int:
    file = tmp_path / name
    return len(file.read_text().splitlines()) if file.exists() else 0


def test_sigterm_lets_the_running_step_finish_and_the_rerun_goes_on(
    tmp_path: Path, pipeline: Callable[[float], Path]
) -> None:
    pipeline(1.0)
    run = start(tmp_path)
    try:
        wait_started(tmp_path, run)
        run.send_signal(signal.SIGTERM)
        out = finish(run)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM, out
    assert (
        "wfe run: SIGTERM received, stopping: waiting up to 5 s for the running steps of "
        "1 workflow to finish (send it again to stop at once)"
    ) in out
    assert "Traceback" not in out
    # The step running at the signal finished (within the grace), the next one never began.
    assert (runs(tmp_path, "first-runs"), runs(tmp_path, "second-runs")) == (1, 0)
    (tmp_path / "slow").unlink()
    began = time.monotonic()
    again = start(tmp_path)
    out = finish(again)
    assert again.returncode == 0, out
    assert time.monotonic() - began < 30  # the lease (an hour) was released
    assert "Resuming stop v1" in out
    assert "leased by" not in out
    # First's completion was stored: it does not run again.
    assert (runs(tmp_path, "first-runs"), runs(tmp_path, "second-runs")) == (1, 1)


def test_a_second_signal_stops_at_once(tmp_path: Path, pipeline: Callable[[float], Path]) -> None:
    pipeline(300.0)
    run = start(tmp_path, WFE_HOST_SHUTDOWN_GRACE="600")
    try:
        wait_started(tmp_path, run)
        run.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        began = time.monotonic()
        run.send_signal(signal.SIGTERM)
        out = finish(run, timeout=30)
    finally:
        run.kill()
    assert time.monotonic() - began < 20, out
    assert run.returncode == 128 + signal.SIGTERM, out
    assert "waiting up to 600 s" in out
    (tmp_path / "slow").unlink()
    again = start(tmp_path)
    out = finish(again)
    assert again.returncode == 0, out
    assert "Resuming stop v1" in out
    # Cancelled mid-step: the step runs again (steps run at least once).
    assert (runs(tmp_path, "first-runs"), runs(tmp_path, "second-runs")) == (2, 1)


def test_a_run_killed_by_sigkill_is_resumed_at_once(
    tmp_path: Path, pipeline: Callable[[float], Path]
) -> None:
    pipeline(300.0)
    run = start(tmp_path)
    try:
        wait_started(tmp_path, run)
        run.send_signal(signal.SIGKILL)
        finish(run)
    finally:
        run.kill()
    (tmp_path / "slow").unlink()
    began = time.monotonic()
    again = start(tmp_path)
    out = finish(again)
    took = time.monotonic() - began
    assert again.returncode == 0, out
    # The killed run's lease would last an hour: its holder's process is gone, so the lease
    # is taken over, and the run says so.
    assert took < 30, out
    assert "Resuming stop v1" in out
    # Said by the command, or by the lock when the workers got to it first.
    assert "no longer runs" in out, out
    assert (runs(tmp_path, "first-runs"), runs(tmp_path, "second-runs")) == (2, 1)


def test_sigterm_to_a_worker_lets_its_running_step_finish(
    tmp_path: Path, pipeline: Callable[[float], Path]
) -> None:
    """``wfe worker`` stopped mid-step: the step finishes, its completion is stored, the
    worker exits 0, and the workflow goes on at once under the next worker."""
    import anyio

    from wfe_core.models import PointerStatus
    from wfe_host import WorkflowHost
    from wfe_yaml import load_workflow

    file = pipeline(1.0)
    settings = {
        "persistence": f"sqlite:///{tmp_path / '.wfe' / 'wfe.db'}",
        "host": {"run_workers": False},
    }

    async def start_one() -> str:
        async with WorkflowHost.from_settings(settings) as host:
            for definition in load_workflow(file):
                host.register(definition)
            workflow_id: str = await host.start_workflow("stop")
            return workflow_id

    async def read(workflow_id: str) -> dict[str, str]:
        async with WorkflowHost.from_settings(settings) as host:
            for definition in load_workflow(file):
                host.register(definition)
            instance = await host.get_workflow(workflow_id)
            return {str(p.step_name): str(p.status) for p in instance.pointers}

    workflow_id = anyio.run(start_one)
    environ = clean_environ(WFE_HOST_LEASE_SECONDS=LEASE)
    command = [*wfe_command(), "worker", "stop.yaml", "--log-level", "warning"]
    worker = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_started(tmp_path, worker)
        worker.send_signal(signal.SIGTERM)
        out = finish(worker)
    finally:
        worker.kill()
    assert worker.returncode == 0, out
    assert "waiting up to 5 s for the running steps of 1 workflow to finish" in out
    assert out.splitlines()[-1] == "wfe worker: stopped"
    assert (runs(tmp_path, "first-runs"), runs(tmp_path, "second-runs")) == (1, 0)
    assert anyio.run(read, workflow_id)["First"] == str(PointerStatus.COMPLETE)
    (tmp_path / "slow").unlink()
    again = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30  # the lease (an hour) was released
        while runs(tmp_path, "second-runs") == 0:
            assert time.monotonic() < deadline, "the next worker did not go on"
            time.sleep(0.05)
        again.send_signal(signal.SIGTERM)
        finish(again)
    finally:
        again.kill()
    assert (runs(tmp_path, "first-runs"), runs(tmp_path, "second-runs")) == (1, 1)
