"""``wfe activities`` and ``wfe tasks`` through the real ``wfe`` command, with a real
``wfe worker`` process, on one SQLite file shared by every process (the test's own client
included): activities and user tasks served across processes."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from wfe_core import WorkflowStatus
from wfe_host import WorkflowClient

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytest.importorskip("wfe_sqlite")

#: The worker's definitions: a charge done by an external worker, then a person's approval.
FLOWS = """
from wfe_core import WorkflowBuilder


def record(text):
    def step(ctx):
        ctx.data.setdefault("log", []).append(text)

    return step


order = (
    WorkflowBuilder(dict)
    .activity("charge-card", parameters=lambda data: {"amount": data["amount"]})
    .output(receipt=lambda step: step.result)
    .user_task("Ship the order?", assign_to=lambda data: data["manager"])
    .with_option("yes", "Ship it", lambda b: b.start_with(record("shipped")))
    .with_option("no", "Cancel", lambda b: b.start_with(record("cancelled")))
    .build("cli-order", version=1)
)
charge = (
    WorkflowBuilder(dict)
    .activity("charge-card", parameters=lambda data: {"amount": data["amount"]})
    .output(receipt=lambda step: step.result)
    .build("cli-charge", version=1)
)
definitions = [order, charge]
"""

TIMEOUT = 60.0


@pytest.fixture
def hang_guard() -> Iterator[None]:
    faulthandler.dump_traceback_later(180, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """The environment of every process (the shared SQLite file, the flows module on the
    path) and the flows module; a ``wfe worker`` runs for the test's duration."""
    name = f"wfe_cli_flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FLOWS, encoding="utf-8")
    env = dict(os.environ)
    env.update(
        {
            "WFE_PERSISTENCE": f"sqlite:///{tmp_path}/wfe.db",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]),
            "WFE_LOG_LEVEL": "warning",
        }
    )
    sys.path.insert(0, str(tmp_path))
    module = __import__(name)
    log = (tmp_path / "worker.log").open("w", encoding="utf-8")
    worker = subprocess.Popen(
        [_wfe(), "worker", "-m", name],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield env, module
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def _wfe() -> str:
    return os.path.join(os.path.dirname(sys.executable), "wfe")


def wfe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_wfe(), *args], env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _client(env: dict[str, str], module: Any) -> WorkflowClient:
    client = WorkflowClient.from_settings({"persistence": env["WFE_PERSISTENCE"]})
    for definition in module.definitions:
        client.register(definition)
    return client


async def _start(env: dict[str, str], module: Any, definition: str, data: Any) -> str:
    async with _client(env, module) as client:
        return await client.start_workflow(definition, data)


async def _wait(env: dict[str, str], module: Any, workflow_id: str) -> Any:
    async with _client(env, module) as client:
        return await client.wait_for_workflow(workflow_id, timeout=TIMEOUT)


def _poll(env: dict[str, str], *args: str) -> Any:
    """Run the listing command until it shows something (the worker stores the waiting
    step a moment after the start)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        done = wfe(env, *args)
        assert done.returncode == 0, done.stderr
        found = json.loads(done.stdout)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.usefixtures("hang_guard")
def test_an_activity_and_a_user_task_served_from_the_command_line(setup: Any) -> None:
    env, module = setup
    workflow_id = anyio.run(_start, env, module, "cli-order", {"amount": 12, "manager": "bob"})

    taken = wfe(
        env, "activities", "take", "charge-card", "--worker", "sh-1", "--wait", "30", "--json"
    )
    assert taken.returncode == 0, taken.stderr
    activity = json.loads(taken.stdout)
    assert activity["parameters"] == {"amount": 12}
    assert activity["workflow_id"] == workflow_id
    done = wfe(env, "activities", "complete", activity["token"], '{"receipt": "r-1"}')
    assert done.returncode == 0, done.stderr
    # Used once: the same token again is refused with one line.
    again = wfe(env, "activities", "complete", activity["token"], "{}")
    assert again.returncode == 1
    assert again.stderr.strip().startswith("Error:")
    assert "Traceback" not in again.stderr

    tasks = _poll(env, "tasks", "list", "--assigned-to", "bob", "--json")
    assert [(t["prompt"], t["workflow_id"]) for t in tasks] == [("Ship the order?", workflow_id)]
    assert [o["value"] for o in tasks[0]["options"]] == ["yes", "no"]
    wrong = wfe(env, "tasks", "answer", tasks[0]["key"], "maybe", "--user", "bob")
    assert wrong.returncode == 1
    assert "not an option" in wrong.stderr
    answered = wfe(env, "tasks", "answer", tasks[0]["key"], "yes", "--user", "bob")
    assert answered.returncode == 0, answered.stderr

    instance = anyio.run(_wait, env, module, workflow_id)
    assert instance.status == WorkflowStatus.COMPLETE
    assert instance.data["receipt"] == {"receipt": "r-1"}
    assert instance.data["log"] == ["shipped"]


@pytest.mark.usefixtures("hang_guard")
def test_concurrent_takers_in_other_processes_never_share_an_activity(setup: Any) -> None:
    env, module = setup

    async def start_three() -> list[str]:
        async with _client(env, module) as client:
            return [await client.start_workflow("cli-charge", {"amount": n}) for n in range(2)]

    workflow_ids = anyio.run(start_three)
    # Wait until the worker has stored both waiting activities.
    deadline = time.monotonic() + TIMEOUT

    async def waiting() -> int:
        async with _client(env, module) as client:
            return len(await client.persistence.get_open_subscriptions("wfe.activity:charge-card"))

    while anyio.run(waiting) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    takers = [
        subprocess.Popen(
            [_wfe(), "activities", "take", "charge-card", "--worker", f"p{n}", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    results = [(p.wait(timeout=TIMEOUT), p.communicate()) for p in takers]
    took = [json.loads(out) for code, (out, _err) in results if code == 0]
    assert sorted(code for code, _ in results) == [0, 0, 3], results
    assert len({t["token"] for t in took}) == 2
    assert sorted(t["workflow_id"] for t in took) == sorted(workflow_ids)

    # A failure from the shell fails the step (no error behaviour: the workflow fails).
    failing = took[0]
    failed = wfe(env, "activities", "fail", failing["token"], "card declined")
    assert failed.returncode == 0, failed.stderr
    instance = anyio.run(_wait, env, module, failing["workflow_id"])
    assert instance.status == WorkflowStatus.FAILED
    assert "card declined" in (instance.pointers[0].error or "")
    # Released, another process takes it at once.
    released = wfe(env, "activities", "release", took[1]["token"])
    assert released.returncode == 0, released.stderr
    retaken = wfe(env, "activities", "take", "charge-card", "--worker", "p9", "--json")
    assert retaken.returncode == 0, retaken.stderr
    assert json.loads(retaken.stdout)["workflow_id"] == took[1]["workflow_id"]
