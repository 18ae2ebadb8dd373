"""``wfe workflows list|show|suspend|resume|terminate`` and the CLI's default store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import wfe_host_tests_cli_store as h

from wfe_host.bootstrap import resolve
from wfe_host.cli import CliState
from wfe_host.cli.defaults import (
    DEFAULT_SQLITE_URL,
    cli_defaults,
    memory_warning,
    resolve_cli_settings,
    uses_default_store,
)

if TYPE_CHECKING:
    from pathlib import Path

DEFS = h.definitions()
ESC = "\x1b["


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # no wfe.toml of the developer's, and .wfe/ lands here
    # Colours are what a test asks for, not what the developer's shell or CI sets.
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    return h.SharedStore()


@pytest.fixture
def cli(shared):
    return h.Cli(h.registry_with(("shared", shared)), {"WFE_PERSISTENCE": "shared"})


@pytest.fixture
def stored(shared) -> dict[str, str]:
    """A finished, a failed (terminated) and a waiting workflow, started in that order."""
    store = shared.persistence
    return {
        "greet": h.start(store, DEFS, "greet", {"name": "ann"}, reference="r-1", run=True),
        "failing": h.start(store, DEFS, "failing", {"name": "bob"}, run=True),
        "approval": h.start(store, DEFS, "approval", {"name": "cy"}, reference="r-3"),
    }


def _waiting(shared, workflow_id: str) -> None:
    """Run ``workflow_id`` until its step waits for the event (one pass on a worker host)."""

    async def body(host) -> None:
        import anyio

        with anyio.fail_after(10):
            while True:
                instance = await host.get_workflow(workflow_id)
                if any(p.status == "waiting_for_event" for p in instance.pointers):
                    return
                await anyio.sleep(0.01)

    h.on_host(shared.persistence, DEFS, body, run_workers=True)


# -- list ----------------------------------------------------------------------------------------


def test_list_without_workflows(cli) -> None:
    result = cli("workflows", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == "no workflows\n"


def test_list_table_newest_first(cli, stored) -> None:
    result = cli("workflows", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "DEFINITION",
        "VERSION",
        "STATUS",
        "REFERENCE",
        "CREATED",
        "COMPLETED",
    ]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        (stored["approval"], "approval", "1", "runnable", "r-3"),
        (stored["failing"], "failing", "2", "terminated", "-"),
        (stored["greet"], "greet", "1", "complete", "r-1"),
    ]
    assert rows[0][6] == "-"  # not completed
    assert rows[2][5].endswith("Z")
    assert rows[2][6].endswith("Z")
    assert result.stderr == ""  # everything fits on one page
    assert ESC not in result.output  # not a terminal: plain text


def test_list_filters(cli, stored) -> None:
    by_status = cli("workflows", "list", "--status", "COMPLETE")
    assert [line.split()[0] for line in by_status.stdout.splitlines()[1:]] == [stored["greet"]]
    by_definition = cli("workflows", "list", "--definition", "failing")
    assert [line.split()[0] for line in by_definition.stdout.splitlines()[1:]] == [
        stored["failing"]
    ]
    by_reference = cli("workflows", "list", "--reference", "r-3")
    assert [line.split()[0] for line in by_reference.stdout.splitlines()[1:]] == [
        stored["approval"]
    ]
    nothing = cli("workflows", "list", "--status", "suspended")
    assert nothing.exit_code == 0
    assert nothing.stdout == ""


def test_list_bad_status_is_a_usage_error(cli) -> None:
    result = cli("workflows", "list", "--status", "done")
    assert result.exit_code == 2
    assert "'done' is not one of" in result.stderr


def test_list_pages(cli, stored) -> None:
    first = cli("workflows", "list", "--take", "2")
    assert len(first.stdout.splitlines()) == 3
    assert first.stderr == "1-2 of 3; --skip 2 for more\n"
    last = cli("workflows", "list", "--skip", "2", "--take", "2")
    assert [line.split()[0] for line in last.stdout.splitlines()[1:]] == [stored["greet"]]
    assert last.stderr == "3-3 of 3\n"
    beyond = cli("workflows", "list", "--skip", "5")
    assert beyond.stdout == ""
    assert beyond.stderr == "no workflows after the first 5 (of 3)\n"


def test_list_json(cli, stored) -> None:
    result = cli("workflows", "list", "--json", "--take", "2")
    assert result.exit_code == 0
    page = json.loads(result.stdout)
    assert (page["total"], page["skip"], page["take"]) == (3, 0, 2)
    first = page["items"][0]
    assert first["id"] == stored["approval"]
    assert first["status"] == "runnable"
    assert first["data"] == {"name": "cy"}
    assert "pointers" not in first
    assert {"definition_id", "version", "reference", "create_time", "complete_time"} <= set(first)


def test_colours_only_when_asked_and_not_with_no_color(cli, stored) -> None:
    coloured = cli("workflows", "list", color=True)
    assert ESC in coloured.stdout
    plain = cli("workflows", "list", color=True, env={"NO_COLOR": "1"})
    assert ESC not in plain.stdout


# -- show ----------------------------------------------------------------------------------------


def test_show_finished_workflow(cli, stored) -> None:
    result = cli("workflows", "show", stored["greet"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"Workflow     {stored['greet']}" in text
    assert "Definition   greet v1" in text
    assert "Status       complete" in text
    assert "Reference    r-1" in text
    data = text.split("Data:\n", 1)[1].split("\n\n", 1)[0]
    assert json.loads(data) == {"name": "ann", "greeting": "hello ann"}
    steps = text.split("Steps:\n", 1)[1].splitlines()
    assert steps[0].split() == ["STEP", "STATUS", "STARTED", "ENDED", "ATTEMPT", "ERROR"]
    assert steps[1].split()[:3] == ["0", "Greet", "complete"]
    assert steps[1].split()[-2:] == ["1", "-"]
    assert "Errors:" not in text


def test_show_waiting_workflow_names_its_event(cli, shared, stored) -> None:
    _waiting(shared, stored["approval"])
    result = cli("workflows", "show", stored["approval"])
    assert result.exit_code == 0, result.output
    steps = result.stdout.split("Steps:\n", 1)[1].splitlines()
    assert "WAITING FOR" in steps[0]
    assert steps[2].split()[:3] == ["1", "Approval", "waiting_for_event"]
    assert "event approval/cy" in steps[2]


def test_show_failed_workflow_lists_its_errors(cli, stored) -> None:
    result = cli("workflows", "show", stored["failing"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Status       terminated" in text
    steps = text.split("Steps:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert steps[1].split()[:3] == ["0", "Fail", "failed"]
    assert steps[1].endswith("RuntimeError: boom")  # first line of the error only
    errors = text.split("Errors:\n", 1)[1].splitlines()
    assert errors[0].split() == ["TIME", "STEP", "TYPE", "MESSAGE"]
    assert errors[1].split()[1:] == ["Fail", "builtins.RuntimeError", "RuntimeError:", "boom"]
    assert "Traceback" not in text
    with_tracebacks = cli("workflows", "show", stored["failing"], "--tracebacks")
    assert "Traceback of Fail at " in with_tracebacks.stdout
    assert 'raise RuntimeError("boom\\nsecond line")' in with_tracebacks.stdout


def test_show_json(cli, stored) -> None:
    result = cli("workflows", "show", stored["failing"], "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["id"] == stored["failing"]
    assert record["status"] == "terminated"
    assert record["pointers"][0]["status"] == "failed"
    assert record["pointers"][0]["step_name"] == "Fail"
    [error] = record["errors"]
    assert error["message"] == "RuntimeError: boom\nsecond line"
    assert error["error_type"] == "builtins.RuntimeError"
    assert "Traceback" in error["traceback"]


@pytest.mark.parametrize("command", ["show", "suspend", "resume", "terminate"])
def test_unknown_id_is_one_error_line(cli, command: str) -> None:
    result = cli("workflows", command, "no-such-id")
    assert result.exit_code == 1
    assert result.stderr == "Error: no workflow with id 'no-such-id'\n"
    assert result.stdout == ""


def test_debug_shows_the_traceback(cli) -> None:
    result = cli("--debug", "workflows", "show", "no-such-id")
    assert result.exit_code == 1
    assert result.exception is not None  # raised through, for its traceback


# -- suspend, resume, terminate ------------------------------------------------------------------


def _status(cli, workflow_id: str) -> str:
    result = cli("workflows", "show", workflow_id, "--json")
    assert result.exit_code == 0, result.output
    status: str = json.loads(result.stdout)["status"]
    return status


def test_suspend_resume_terminate(cli, stored) -> None:
    wid = stored["approval"]
    suspended = cli("workflows", "suspend", wid)
    assert suspended.exit_code == 0, suspended.output
    assert suspended.stdout == f"suspended {wid}\n"
    assert _status(cli, wid) == "suspended"

    again = cli("workflows", "suspend", wid)
    assert again.exit_code == 1
    assert again.stderr == (
        f"Error: workflow {wid} is suspended; only runnable workflows can be suspended\n"
    )

    resumed = cli("workflows", "resume", wid)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout == f"resumed {wid}\n"
    assert _status(cli, wid) == "runnable"

    not_suspended = cli("workflows", "resume", wid)
    assert not_suspended.exit_code == 1
    assert "only suspended workflows can be resumed" in not_suspended.stderr

    terminated = cli("workflows", "terminate", wid)
    assert terminated.exit_code == 0, terminated.output
    assert terminated.stdout == f"terminated {wid}\n"
    assert _status(cli, wid) == "terminated"


def test_terminate_cancels_a_waiting_step(cli, shared, stored) -> None:
    wid = stored["approval"]
    _waiting(shared, wid)
    assert cli("workflows", "terminate", wid).exit_code == 0
    record = json.loads(cli("workflows", "show", wid, "--json").stdout)
    assert [p["status"] for p in record["pointers"]] == ["complete", "cancelled"]
    assert record["complete_time"] is not None


def test_finished_workflows_cannot_be_changed(cli, stored) -> None:
    wid = stored["greet"]
    result = cli("workflows", "terminate", wid)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: workflow {wid} is complete; only unfinished (runnable or suspended) "
        "workflows can be terminated\n"
    )
    assert cli("workflows", "suspend", wid).exit_code == 1


# -- the default store ---------------------------------------------------------------------------


def test_memory_default_warns_that_nothing_is_shared(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = h.Cli(h.registry_with())  # no sqlite, nothing configured
    result = cli("workflows", "list")
    assert result.exit_code == 0
    assert result.stderr.startswith(
        "Warning: no persistence is configured and wfe-sqlite is not installed, so it is memory"
    )
    assert "no workflows" in result.stderr
    assert not (tmp_path / ".wfe").exists()
    explicit = cli("--persistence", "memory", "workflows", "list")
    assert explicit.stderr.startswith("Warning: persistence is memory: nothing is shared")


def test_configured_store_gives_no_warning(cli) -> None:
    assert "Warning" not in cli("workflows", "list").stderr


def test_defaults_select_sqlite_when_installed(fakes, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_PERSISTENCE", raising=False)
    monkeypatch.delenv("WFE_PERSISTENCE_URL", raising=False)
    monkeypatch.delenv("WFE_CONFIG", raising=False)
    with_sqlite = fakes.registry_of(fakes.SQLITE)
    assert cli_defaults(with_sqlite) == {"persistence": DEFAULT_SQLITE_URL}
    assert cli_defaults(fakes.registry_of()) == {}

    resolved = resolve_cli_settings(CliState(registry=with_sqlite))
    assert resolved.settings.persistence.provider == "sqlite"
    assert resolved.persistence.url == "sqlite:///.wfe/wfe.db"  # the fake keeps its URL
    # lock and queue follow the persistence provider, on the same file
    assert resolved.settings.lock.url == DEFAULT_SQLITE_URL
    assert resolved.settings.queue.provider == "sqlite"
    assert uses_default_store(resolved)
    assert memory_warning(resolved) is None
    assert (tmp_path / ".wfe").is_dir()
    assert (tmp_path / ".wfe" / ".gitignore").read_text(encoding="utf-8").endswith("*\n")


def test_configured_persistence_replaces_the_default(fakes, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_CONFIG", raising=False)
    registry = fakes.registry_of(fakes.SQLITE, fakes.POSTGRES)
    monkeypatch.setenv("WFE_PERSISTENCE", "postgresql://db/wfe")
    resolved = resolve_cli_settings(CliState(registry=registry))
    assert resolved.settings.persistence.provider == "postgres"
    assert not uses_default_store(resolved)
    assert not (tmp_path / ".wfe").exists()

    # Another SQLite file: the default's URL is replaced too.
    state = CliState(registry=registry, overrides={"persistence": "sqlite:///other.db"})
    resolved = resolve_cli_settings(state)
    assert resolved.settings.persistence.url == "sqlite:///other.db"
    assert not (tmp_path / ".wfe").exists()


def test_defaults_sit_below_the_settings_file(fakes, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_PERSISTENCE", raising=False)
    monkeypatch.delenv("WFE_CONFIG", raising=False)
    (tmp_path / "wfe.toml").write_text('persistence = "sqlite:///in-file.db"\n', encoding="utf-8")
    registry = fakes.registry_of(fakes.SQLITE)
    resolved = resolve(registry=registry, defaults=cli_defaults(registry))
    assert resolved.settings.persistence.url == "sqlite:///in-file.db"


def test_unwritable_default_directory_is_one_error_line(fakes, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WFE_PERSISTENCE", raising=False)
    monkeypatch.delenv("WFE_CONFIG", raising=False)
    (tmp_path / ".wfe").write_text("a file where the directory should be", encoding="utf-8")
    cli = h.Cli(fakes.registry_of(fakes.SQLITE))
    result = cli("workflows", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot create .wfe/ for the default store")


# -- on SQLite, across processes -----------------------------------------------------------------


def test_default_sqlite_store_across_processes(tmp_path: Path) -> None:
    pytest.importorskip("wfe_sqlite")
    store = tmp_path / ".wfe" / "wfe.db"
    url = f"sqlite:///{store}"  # what the CLI's relative default means in tmp_path

    async def start_two(host) -> list[str]:
        done = await host.start_workflow("greet", data={"name": "ann"})
        await host.wait_for_workflow(done, timeout=20)
        waiting = await host.start_workflow("approval", data={"name": "cy"}, reference="r-9")
        return [done, waiting]

    import anyio

    from wfe_host import WorkflowHost

    async def run() -> list[str]:
        async with WorkflowHost.from_settings({"persistence": url}) as host:
            for definition in DEFS:
                host.register(definition)
            return await start_two(host)

    done, waiting = anyio.run(run)

    listed = h.wfe_process("workflows", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""  # no memory warning: the default store is SQLite
    items = json.loads(listed.stdout)["items"]
    assert [(i["id"], i["status"]) for i in items] == [(waiting, "runnable"), (done, "complete")]

    table = h.wfe_process("workflows", "list", "--status", "complete", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert ESC not in table.stdout
    assert table.stdout.splitlines()[1].split()[:4] == [done, "greet", "1", "complete"]

    suspended = h.wfe_process("workflows", "suspend", waiting, cwd=tmp_path)
    assert suspended.returncode == 0, suspended.stderr
    shown = h.wfe_process("workflows", "show", waiting, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "suspended"

    terminated = h.wfe_process("workflows", "terminate", waiting, cwd=tmp_path)
    assert terminated.returncode == 0, terminated.stderr
    missing = h.wfe_process("workflows", "show", "nope", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == "Error: no workflow with id 'nope'\n"
    assert "Traceback" not in missing.stderr


# -- show by id prefix -----------------------------------------------------------------------


def test_show_accepts_a_unique_id_prefix(cli, stored) -> None:
    prefix = stored["greet"][:8]
    assert not any(wid.startswith(prefix) for key, wid in stored.items() if key != "greet")
    result = cli("workflows", "show", prefix)
    assert result.exit_code == 0, result.output
    assert f"Workflow     {stored['greet']}" in result.stdout
    as_json = cli("workflows", "show", prefix, "--json")
    assert json.loads(as_json.stdout)["id"] == stored["greet"]


def test_an_ambiguous_prefix_is_an_error_listing_the_matches(cli, shared) -> None:
    # 17 ids over 16 hex digits: two of them surely start with the same one.
    ids = [h.start(shared.persistence, DEFS, "greet", {"name": str(n)}) for n in range(17)]
    firsts = [wid[0] for wid in ids]
    digit = next(d for d in firsts if firsts.count(d) > 1)
    matching = [wid for wid in ids if wid.startswith(digit)]
    result = cli("workflows", "show", digit)
    assert result.exit_code == 1
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith(f"Error: id prefix '{digit}' matches {len(matching)} workflows: ")
    assert message.endswith("; give more of the id\n")
    assert all(f"{wid} (greet)" in message for wid in matching[:10])
    assert message.count("\n") == 1


def test_an_unknown_prefix_is_the_unknown_id_line(cli, stored) -> None:
    unused = next(
        d for d in "0123456789abcdef" if not any(w.startswith(d) for w in stored.values())
    )
    result = cli("workflows", "show", unused + "00")
    assert (result.exit_code, result.stderr) == (1, f"Error: no workflow with id '{unused}00'\n")


def test_force_color_colours_statuses_off_a_terminal(cli, stored) -> None:
    forced = cli("workflows", "list", env={"FORCE_COLOR": "1"})
    assert ESC in forced.stdout
    assert ESC not in cli("workflows", "list").stdout
    both = cli("workflows", "list", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert ESC not in both.stdout  # NO_COLOR wins


def test_list_stuck_shows_workflows_no_worker_can_run_and_why(cli, shared) -> None:
    """``--stuck``: runnable, overdue, unleased workflows, with their last error (a worker
    that lacks the definition version records it once)."""
    store = shared.persistence
    waiting = h.start(store, DEFS, "greet", {"name": "ann"})

    async def lacking(host) -> None:
        from wfe_host_tests_polling import until

        async def recorded() -> bool:
            return bool(await store.get_errors(waiting))

        await until(recorded)

    # A worker with only the other definitions: it records why it cannot run the workflow.
    others = [d for d in DEFS if d.id != "greet"]
    h.on_host(store, others, lacking, run_workers=True)
    result = cli("workflows", "list", "--stuck", "--overdue", "0")
    assert result.exit_code == 0, result.output
    [header, row] = result.stdout.splitlines()
    assert header.split() == ["ID", "DEFINITION", "VERSION", "DUE", "SINCE", "LAST", "ERROR"]
    assert row.startswith(waiting)
    assert "definition 'greet' v1 is not registered on worker" in row
    result = cli("workflows", "list", "--stuck", "--overdue", "0", "--json")
    record = json.loads(result.stdout)
    assert record["total"] == 1
    [item] = record["items"]
    assert item["id"] == waiting
    assert item["last_error"]["message"].startswith("definition 'greet' v1 is not registered")
    # Due only a moment ago: not stuck by the default minute.
    result = cli("workflows", "list", "--stuck")
    assert result.exit_code == 0, result.output
    assert "no stuck workflows" in result.output
    result = cli("workflows", "list", "--stuck", "--status", "complete")
    assert result.exit_code == 2
    assert "--stuck lists runnable workflows" in result.output
