"""Three host processes with Valkey as lock, queue and lifecycle over one SQLite file: one is
killed, one is paused past its leases, and Valkey restarts losing every key, mid-run. Every
workflow still finishes, each transition applied once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from wfe_core import WorkflowStatus
from wfe_host import WorkflowHost
from wfe_sqlite import SqlitePersistence
from wfe_valkey.testing import unique_prefix

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from wfe_valkey.testing import ValkeyTestServer

CHILD = Path(__file__).with_name("_child.py")
#: Bounded: 24 workflows of 4 steps of 0.2 s, two at a time per host.
COUNT, STEP_SECONDS, CONCURRENCY = 24, 0.2, 2


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def until(condition: Callable[[], bool], children: list[subprocess.Popen[bytes]]) -> None:
    with anyio.fail_after(90):
        while True:
            if condition():
                return
            for child in children:
                assert child.poll() is None or child.returncode == -signal.SIGKILL, child.args
            await anyio.sleep(0.02)


def spawn_host(
    log: Path, url: str, prefix: str, db_url: str, side_effects: Path
) -> subprocess.Popen[bytes]:
    # Its output goes to a file: a pipe nobody reads could fill up and stall it.
    argv = [sys.executable, str(CHILD), "host", url, prefix, db_url, str(side_effects)]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*argv, str(CONCURRENCY), str(STEP_SECONDS)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.anyio
async def test_three_hosts_survive_a_kill_a_pause_and_a_valkey_restart(
    tmp_path: Path, restartable: ValkeyTestServer, child: ModuleType
) -> None:
    steps: tuple[str, ...] = child.STEPS
    prefix = unique_prefix()
    db_url = f"sqlite:///{tmp_path}/wfe.db"
    side_effects = tmp_path / "side-effects.txt"
    async with SqlitePersistence(db_url):
        pass  # the file and its schema exist before the hosts race to open it
    settings = child.host_settings(restartable.url, prefix, db_url)
    definition = child.chaos_flow(str(side_effects), STEP_SECONDS)
    client = WorkflowHost.from_settings({**settings, "host": {"run_workers": False}})
    client.scheduler.recovery_seconds = child.RECOVERY_SECONDS

    hosts: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"host-{n}.log" for n in range(3)]
    try:
        for log in logs:
            hosts.append(spawn_host(log, restartable.url, prefix, db_url, side_effects))
        await until(lambda: all('"ready"' in log.read_text() for log in logs), hosts)
        async with client:
            client.register(definition)
            ids = [await client.start_workflow("chaos-flow") for _ in range(COUNT)]
            total = COUNT * len(steps)

            await until(lambda: len(lines(side_effects)) >= total // 6, hosts)
            hosts[0].send_signal(signal.SIGKILL)
            await until(lambda: len(lines(side_effects)) >= total // 3, hosts)
            hosts[1].send_signal(signal.SIGSTOP)  # paused past its 1.5 s leases
            await anyio.sleep(2.5)
            hosts[1].send_signal(signal.SIGCONT)
            await until(lambda: len(lines(side_effects)) >= total // 2, hosts)
            restartable.restart()
            assert len(lines(side_effects)) < total, "everything finished before the restart"

            finished = [await client.wait_for_workflow(i, timeout=90) for i in ids]
    finally:
        for host in hosts:
            if host.poll() is None:
                host.send_signal(signal.SIGCONT)
                host.kill()
            host.wait()

    for instance in finished:
        assert instance.status == WorkflowStatus.COMPLETE, instance
        # Each transition applied once: the data saw each step once, in order.
        assert instance.data.log == list(steps)
        assert instance.data.count == len(steps)
        assert [p.step_id for p in instance.pointers] == list(range(len(steps)))
    runs = lines(side_effects)
    per_step = Counter((workflow, step) for _, workflow, step, _ in runs)
    assert set(per_step) == {(i, s) for i in ids for s in steps}
    # Steps run at least once; again only where a kill, a pause or the restart cut a pass
    # short (each of them cuts at most the passes running then: CONCURRENCY per host).
    repeated = sum(n - 1 for n in per_step.values())
    assert repeated <= 3 * len(hosts) * CONCURRENCY, per_step
    pids = {pid for pid, *_ in runs}
    assert len(pids) == 3, "every host ran steps"
