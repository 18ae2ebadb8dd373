"""What a step leaves running is killed when it ends: also processes that left its process group
(``setsid``, double-forking daemons). Real bash, real processes; each test is bounded."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from wfe_core.models import WorkflowStatus
from wfe_core.spi import processes
from wfe_yaml_support import alive, kill_alive, pointers, run_yaml

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or not processes.supported(),
        reason="needs Linux /proc",
    ),
]


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


async def test_setsid_and_daemons_die_with_their_step(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    instance = await run_yaml(
        f"""
workflow:
  id: escape
  steps:
    - name: Escape
      config:
        run: |
          # Out of the step's process group, still holding its output pipes.
          setsid sleep 300 &
          echo $! >> {pid_file}
          # A classic double-fork daemon: its parent exits, it is re-parented.
          ( setsid sh -c 'sleep 300 & echo $! >> {pid_file}' & )
          # A child that clears its environment, below a process that left the group.
          setsid bash -c 'env -i sleep 300 & echo $! >> {pid_file}; wait' &
          while [ "$(wc -l < {pid_file})" -lt 3 ]; do sleep 0.01; done
          echo done
"""
    )
    found = pids(pid_file)
    try:
        assert instance.status == WorkflowStatus.COMPLETE
        assert len(found) == 3
        assert [pid for pid in found if alive(pid)] == []
    finally:
        kill_alive(found)


async def test_setsid_children_die_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    instance = await run_yaml(
        f"""
workflow:
  id: slow
  steps:
    - name: Slow
      config:
        timeout: 1s
        run: |
          setsid sleep 300 > /dev/null 2>&1 < /dev/null &
          echo $! >> {pid_file}
          sleep 300
"""
    )
    found = pids(pid_file)
    try:
        assert instance.status == WorkflowStatus.FAILED
        [slow] = pointers(instance, "Slow")
        assert slow.extensions["result"]["timed_out"] is True
        assert [pid for pid in found if alive(pid)] == []
    finally:
        kill_alive(found)


async def test_concurrent_steps_kill_only_their_own_leftovers(tmp_path: Path) -> None:
    # The short step ends while the long one's detached child must live on until its own
    # step ends.
    short, long_ = tmp_path / "short", tmp_path / "long"
    instance = await run_yaml(
        f"""
workflow:
  id: two
  steps:
    - name: Both
      parallel:
        - name: Short
          config:
            timeout: 20s
            run: |
              while [ ! -s {long_} ]; do sleep 0.01; done
              setsid sleep 300 > /dev/null 2>&1 &
              echo $! > {short}
        - name: Long
          config:
            timeout: 20s
            run: |
              setsid sleep 300 > /dev/null 2>&1 &
              echo $! > {long_}
              while [ ! -s {short} ]; do sleep 0.01; done
              # Until the short step's leftover is dead (gone, or a zombie: state Z).
              left=/proc/$(cat {short})/stat
              while [ -e $left ] && ! grep -q ') Z' $left; do sleep 0.01; done
              kill -0 "$(cat {long_})" && echo "still alive"
"""
    )
    found = pids(short) + pids(long_)
    try:
        steps = [
            (p.step_name, p.status, p.error, p.extensions.get("result")) for p in instance.pointers
        ]
        assert instance.status == WorkflowStatus.COMPLETE, steps
        [long_step] = pointers(instance, "Long")
        assert long_step.extensions["result"]["stdout"] == "still alive"
        assert [pid for pid in found if alive(pid)] == []
    finally:
        kill_alive(found)
