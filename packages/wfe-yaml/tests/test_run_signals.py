"""``wfe run`` stopped by SIGTERM (a CI runner cancelling a job) or killed by SIGKILL: its
steps' processes do not live on, and the run resumes. Real processes; each test is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from wfe_core.spi import processes
from wfe_yaml_support import alive, kill_alive

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not processes.supported(), reason="needs Linux /proc"
)

# The first run records its processes and waits; a run after that one finishes at once.
PIPELINE = """
workflow:
  id: cancel
  steps:
    - name: Wait
      config:
        run: |
          if [ -s {dir}/pids ]; then echo resumed; exit 0; fi
          sleep 300 &
          child=$!
          setsid sleep 300 > /dev/null 2>&1 &
          echo "$$ $child $!" > {dir}/pids.tmp
          mv {dir}/pids.tmp {dir}/pids
          sleep 300
"""


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    # A lease that would not lapse during the test: resuming at once proves it was released.
    env["WFE_HOST_LEASE_SECONDS"] = "3600"
    return subprocess.Popen(
        [sys.executable, "-m", "wfe_host", "run", str(tmp_path / "cancel.yaml"), "--plain", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def step_pids(tmp_path: Path, run: subprocess.Popen[Any]) -> list[int]:
    """The step's shell, its background child and its setsid child, once they all run."""
    deadline = time.monotonic() + 60
    while not (tmp_path / "pids").exists():
        assert time.monotonic() < deadline, "the step never started"
        assert run.poll() is None, run.communicate()[0] if run.stdout else run.returncode
        time.sleep(0.05)
    return [int(pid) for pid in (tmp_path / "pids").read_text().split()]


def children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    if int(stat.read().rpartition(")")[2].split()[1]) == pid:
                        found.append(int(name))
            except (OSError, ValueError):
                continue
    return found


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    pytest.importorskip("wfe_sqlite")  # a store that outlives the process
    file = tmp_path / "cancel.yaml"
    file.write_text(PIPELINE.format(dir=tmp_path))
    return file


def test_sigterm_stops_the_run_kills_its_steps_and_the_run_resumes(
    tmp_path: Path, pipeline: Path
) -> None:
    run = start(tmp_path, "--timeout", "120")
    pids = step_pids(tmp_path, run)
    try:
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 128 + signal.SIGTERM, out
        assert "wfe run: SIGTERM received, stopping" in out
        assert "Traceback" not in out
        # The shell, its child in the step's process group and the one that left it.
        assert [pid for pid in pids if alive(pid)] == []
        # The lease was released: the run goes on long before it would lapse.
        again = start(tmp_path, "--timeout", "120")
        out, _ = again.communicate(timeout=60)
        assert again.returncode == 0, out
        assert "Resuming cancel v1" in out
        assert "Wait │ resumed" in out
    finally:
        run.kill()
        kill_alive(pids)


def test_sigint_stops_the_run_like_sigterm(tmp_path: Path, pipeline: Path) -> None:
    run = start(tmp_path, "--timeout", "120")
    pids = step_pids(tmp_path, run)
    try:
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 128 + signal.SIGINT, out
        assert "wfe run: SIGINT received, stopping" in out
        assert [pid for pid in pids if alive(pid)] == []
    finally:
        run.kill()
        kill_alive(pids)


def test_the_watchdog_kills_the_steps_of_a_run_killed_by_sigkill(
    tmp_path: Path, pipeline: Path
) -> None:
    run = start(tmp_path, "--timeout", "120")
    pids = step_pids(tmp_path, run)
    watchdogs = [pid for pid in children(run.pid) if pid not in pids]
    try:
        assert len(watchdogs) == 1  # the step's shell is the other child
        os.kill(run.pid, signal.SIGKILL)
        run.communicate(timeout=60)
        # The watchdog notices at once; the deadline only bounds the test.
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in [*pids, *watchdogs]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if alive(pid)] == []
        assert not alive(watchdogs[0])  # and then it exits
    finally:
        kill_alive(pids)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_worker_leaves_no_step_running(
    tmp_path: Path, pipeline: Path, signum: int
) -> None:
    import anyio

    from wfe_host import WorkflowHost
    from wfe_yaml import load_workflow

    async def start() -> None:
        # Stored by another process (this one); the worker runs it.
        settings = {
            "persistence": f"sqlite:///{tmp_path / '.wfe' / 'wfe.db'}",
            "host": {"run_workers": False},
        }
        async with WorkflowHost.from_settings(settings) as host:
            for definition in load_workflow(pipeline):
                host.register(definition)
            await host.start_workflow("cancel")

    anyio.run(start)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "wfe_host", "worker", str(pipeline)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        pids = step_pids(tmp_path, worker)
        os.kill(worker.pid, signum)
        worker.wait(timeout=60)
        deadline = time.monotonic() + 30  # SIGKILL: the watchdog notices at once
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if alive(pid)] == []
    finally:
        worker.kill()
        worker.wait()
        kill_alive(pids)
