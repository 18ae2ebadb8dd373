"""Operator commands: ``wfe purge``, ``wfe config show``, and logging for every command."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import attrs
import pytest
import wfe_host_tests_cli_store as h

from wfe_core.log_context import LogContextFilter, bound
from wfe_core.plugins import ProviderKind, ProviderSpec, hookimpl
from wfe_host.logs import JsonFormatter, TextFormatter

if TYPE_CHECKING:
    from pathlib import Path

DEFS = h.definitions()


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    for name in ("NO_COLOR", "FORCE_COLOR", "WFE_LOG_LEVEL", "WFE_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    return h.SharedStore()


@pytest.fixture
def cli(shared):
    return h.Cli(h.registry_with(("shared", shared)), {"WFE_PERSISTENCE": "shared"})


def _age(store, workflow_id: str, days: float) -> None:
    """Make ``workflow_id`` look finished ``days`` ago (as if the test waited that long)."""

    async def body() -> None:
        instance = await store.get_workflow(workflow_id)
        instance.complete_time = datetime.now(UTC) - timedelta(days=days)
        await store.persist_workflow(instance)

    anyio.run(body)


async def _ids(store) -> set[str]:
    return {i.id for i in (await store.list_workflows(take=100)).items}


# -- wfe purge ---------------------------------------------------------------------------------


def test_purge_deletes_only_finished_instances_older_than_the_age(cli, shared) -> None:
    store = shared.persistence
    old = h.start(store, DEFS, "greet", {"name": "old"}, run=True)
    recent = h.start(store, DEFS, "greet", {"name": "new"}, run=True)
    waiting = h.start(store, DEFS, "approval", {"name": "w"})  # runnable: never purged
    _age(store, old, days=10)
    _age(store, recent, days=1)

    result = cli("purge", "--older-than", "7d")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 1 instance (complete, terminated, failed)")
    assert anyio.run(_ids, store) == {recent, waiting}


def test_purge_dry_run_counts_and_deletes_nothing(cli, shared) -> None:
    store = shared.persistence
    ids = [h.start(store, DEFS, "greet", {"name": str(n)}, run=True) for n in range(3)]
    for workflow_id in ids[:2]:
        _age(store, workflow_id, days=30)

    result = cli("purge", "--older-than", "2w", "--dry-run")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("would delete 2 instances")
    assert anyio.run(_ids, store) == set(ids)


def test_purge_status_filter(cli, shared) -> None:
    store = shared.persistence
    done = h.start(store, DEFS, "greet", {"name": "a"}, run=True)
    failed = h.start(store, DEFS, "failing", {"name": "b"}, run=True)
    _age(store, done, days=3)
    _age(store, failed, days=3)

    result = cli("purge", "--older-than", "1d", "--status", "complete")

    assert result.exit_code == 0, result.output
    assert anyio.run(_ids, store) == {failed}


@pytest.mark.parametrize(
    ("age", "message"),
    [
        ("7x", "'7x' is not an age such as 7d, 12h, 1d12h, 30m or 2w"),
        ("", "'' is not an age"),
        ("99999999w", "'99999999w' is more than 100 years"),
    ],
)
def test_purge_refuses_a_bad_age_with_one_line(cli, age: str, message: str) -> None:
    result = cli("purge", "--older-than", age)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


# -- wfe config show ---------------------------------------------------------------------------


def test_config_show_names_the_source_of_each_value(cli, tmp_path: Path) -> None:
    (tmp_path / "wfe.toml").write_text("[host]\nconcurrency = 7\n", encoding="utf-8")

    result = cli("config", "show", "--json", env={"WFE_HOST_LEASE_SECONDS": "12"})

    assert result.exit_code == 0, result.output
    rows = {row["setting"]: row for row in json.loads(result.output)}
    assert rows["persistence.provider"]["value"] == "shared"
    assert rows["persistence.provider"]["source"] == "environment WFE_PERSISTENCE"
    assert rows["host.concurrency"] == {
        "setting": "host.concurrency",
        "value": 7,
        "source": "wfe.toml",
    }
    assert rows["host.lease_seconds"]["source"] == "environment WFE_HOST_LEASE_SECONDS"
    assert rows["host.max_parallel_steps"]["source"] == "default"


@attrs.define
class _SecretOptions:
    password: str | None = None
    password_file: str | None = None


class _SecretStore(h.SharedStore):
    """``shared`` persistence whose options hold a password, like a database provider's."""

    @hookimpl
    def register_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                ProviderKind.PERSISTENCE,
                "shared",
                lambda url, options: self.persistence,
                url_schemes=("shared",),
                options_class=_SecretOptions,
            )
        ]


def test_config_show_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = h.Cli(h.registry_with(("shared", _SecretStore())))
    env = {
        "WFE_PERSISTENCE_URL": "shared://admin:hunter2@db.example/x",
        "WFE_PERSISTENCE_OPTIONS": '{"password": "hunter2", "password_file": "/run/pw"}',
    }

    result = cli("config", "show", "--json", env=env)

    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    rows = {row["setting"]: row["value"] for row in json.loads(result.output)}
    assert rows["persistence.url"] == "shared://admin:***@db.example/x"
    assert rows["persistence.options.password"] == "***"
    assert rows["persistence.options.password_file"] == "/run/pw"  # a path, not a secret


def test_config_show_text_table(cli) -> None:
    result = cli("config", "show")
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split() == ["SETTING", "VALUE", "SOURCE"]
    assert any(line.split()[:3] == ["lock.provider", "memory", "default"] for line in lines)


# -- logging -----------------------------------------------------------------------------------


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("wfe_host.test", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    LogContextFilter().filter(record)
    return record


def test_json_log_lines_carry_the_bound_workflow_and_step() -> None:
    with bound(workflow_id="wf-1", step_name="build"):
        inside = json.loads(JsonFormatter().format(_record("step failed")))
    outside = json.loads(JsonFormatter().format(_record("idle")))

    assert inside["workflow_id"] == "wf-1"
    assert inside["step_name"] == "build"
    assert inside["level"] == "warning"
    assert inside["logger"] == "wfe_host.test"
    assert inside["message"] == "step failed"
    assert "workflow_id" not in outside


def test_text_log_lines_append_the_context_in_brackets() -> None:
    with bound(workflow_id="wf-2"):
        text = TextFormatter().format(_record("late write refused"))
    assert text.endswith("wfe_host.test: late write refused [workflow_id=wf-2]")


def test_bound_values_do_not_leak_between_concurrent_tasks() -> None:
    seen: dict[str, str | None] = {}

    async def task(name: str) -> None:
        with bound(workflow_id=name):
            await anyio.sleep(0.01)
            seen[name] = _record("x").workflow_id  # type: ignore[attr-defined]

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(task, "a")
            tg.start_soon(task, "b")

    anyio.run(main)
    assert seen == {"a": "a", "b": "b"}


def test_log_level_and_format_options_apply_to_every_command(tmp_path: Path) -> None:
    # A real process: the command configures logging itself only when nothing else did.
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from wfe_host.cli import main\n"
        "@main.command('noisy')\n"
        "def noisy():\n"
        "    logging.getLogger('wfe_host.noisy').info('hello %s', 'there')\n"
        "    logging.getLogger('wfe_host.noisy').debug('hidden')\n"
        "sys.exit(main(['--log-level', 'info', '--log-format', 'json', 'noisy']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**h.NO_AUTOLOAD, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("info", "wfe_host.noisy", "hello there")
    ]


def test_wfe_log_level_variable_is_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import logging, sys\n"
        "from wfe_host.cli import main\n"
        "@main.command('noisy')\n"
        "def noisy():\n"
        "    logging.getLogger('wfe_host.noisy').warning('shown')\n"
        "    logging.getLogger('wfe_host.noisy').info('hidden')\n"
        "sys.exit(main(['noisy']))\n"
    )
    env = {**h.NO_AUTOLOAD, "PATH": "/usr/bin:/bin", "WFE_LOG_LEVEL": "warning"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "shown" in done.stderr
    assert "hidden" not in done.stderr
