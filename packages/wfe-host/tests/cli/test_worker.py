"""``wfe worker``: what it loads, that it runs stored work, and that a signal stops it cleanly.

In-process runs use the shared in-memory store of ``_store.py`` and are stopped by a step of
the workflow they run (it raises SIGTERM, as a service manager would send it); the SQLite
tests run real ``wfe worker`` processes.
"""

from __future__ import annotations

import faulthandler
import gc
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import click
import pytest

from wfe_core import ExecutionResult, WorkflowBuilder
from wfe_core.errors import ConfigurationError, ProviderNotFoundError
from wfe_core.plugins import DefinitionFormatSpec, hookimpl
from wfe_host import HostOptions
from wfe_host.cli.worker import definition_files, load_module_definitions, parse_variables

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path
    from types import ModuleType

    from wfe_core.models import WorkflowDefinition


import wfe_host_tests_cli_store as h

#: A module of workflow definitions for the worker: ``job`` greets, waits for event ``go``
#: (keyed by the name), stores its data and then stops the worker; ``stopper`` only stops it.
FLOWS = """
import asyncio
import signal

from wfe_core import ExecutionResult, WorkflowBuilder


def greet(ctx):
    ctx.data["greeting"] = "hello " + ctx.data["name"]


async def stop_soon(ctx):
    # SIGTERM a moment after this step, once its pass has stored the workflow's end.
    asyncio.get_running_loop().call_later(0.3, signal.raise_signal, signal.SIGTERM)
    return ExecutionResult.next()


job = (
    WorkflowBuilder(dict)
    .start_with(greet).name("Greet")
    .wait_for("go", key=lambda data: data["name"]).name("Go")
    .output(go=lambda step: step.event_data)
    .then(stop_soon).name("Stop")
    .build("job", version=1)
)
stopper = WorkflowBuilder(dict).start_with(stop_soon).name("Stop").build("stopper", version=1)
"""


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """A worker that failed to stop would hang the run: dump the stacks and exit instead."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The FLOWS module under a unique name, importable from the working directory."""
    name = f"wfe_test_flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FLOWS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return h.SharedStore()


@pytest.fixture
def cli(shared):
    return h.Cli(h.registry_with(("shared", shared)), {"WFE_PERSISTENCE": "shared"})


def _show(cli, workflow_id: str) -> dict[str, Any]:
    result = cli("workflows", "show", workflow_id, "--json")
    assert result.exit_code == 0, result.output
    record: dict[str, Any] = json.loads(result.stdout)
    return record


def _definitions(module: ModuleType) -> list[WorkflowDefinition]:
    return [module.job, module.stopper]


# -- running in this process ---------------------------------------------------------------------


@pytest.mark.usefixtures("hang_guard")
def test_worker_runs_stored_work_and_stops_on_sigterm(cli, shared, flows) -> None:
    store = shared.persistence
    workflow_id = h.start(store, _definitions(flows), "job", {"name": "ann"})
    published = cli("events", "publish", "go", "ann", '{"n": 1}')
    assert published.exit_code == 0, published.output

    result = cli("worker", "-m", flows.__name__, "--worker-id", "w-1", "--concurrency", "3")

    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines[0] == (
        "wfe worker w-1: 2 definitions (job v1, stopper v1); persistence shared; "
        "concurrency 3. Stop with Ctrl+C."
    )
    assert "wfe worker: SIGTERM received, stopping (send it again to stop at once)" in lines
    assert lines[-1] == "wfe worker: stopped"
    record = _show(cli, workflow_id)
    assert record["status"] == "complete"
    assert record["data"] == {"name": "ann", "greeting": "hello ann", "go": {"n": 1}}


@pytest.mark.usefixtures("hang_guard")
def test_worker_leaves_its_start_up_objects_out_of_garbage_collections(cli, shared, flows) -> None:
    gc.unfreeze()
    h.start(shared.persistence, _definitions(flows), "stopper")
    try:
        result = cli("worker", "-m", flows.__name__)
        assert result.exit_code == 0, result.output
        # Frozen once started: the full collections of a busy worker skip them.
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process is not a worker


@pytest.mark.usefixtures("hang_guard")
def test_worker_options_from_the_environment(cli, shared, flows) -> None:
    workflow_id = h.start(shared.persistence, _definitions(flows), "stopper")
    result = cli(
        "worker",
        env={
            "WFE_WORKER_MODULES": f"{flows.__name__}:stopper",
            "WFE_HOST_WORKER_ID": "from-env",
            "WFE_HOST_CONCURRENCY": "5",
        },
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        "wfe worker from-env: 1 definition (stopper v1); persistence shared; concurrency 5. "
        "Stop with Ctrl+C."
    )
    assert _show(cli, workflow_id)["status"] == "complete"


class FlowFormat:
    """A plugin: ``.flow`` files (JSON ``{"id": ...}``) whose one step stores the variable
    GREETING in the data, then stops the worker."""

    def __init__(self) -> None:
        self.loaded: list[tuple[str, dict[str, str] | None]] = []

    def load(self, path: Path, config: Mapping[str, str] | None) -> list[WorkflowDefinition]:
        spec = json.loads(path.read_text(encoding="utf-8"))
        self.loaded.append((path.name, None if config is None else dict(config)))
        greeting = (config or {}).get("GREETING", "?")

        def greet(ctx: Any) -> None:
            ctx.data["greeting"] = greeting

        async def stop_soon(ctx: Any) -> ExecutionResult:
            import asyncio

            asyncio.get_running_loop().call_later(0.3, signal.raise_signal, signal.SIGTERM)
            return ExecutionResult.next()

        return [
            WorkflowBuilder(dict)
            .start_with(greet)
            .name("Greet")
            .then(stop_soon)
            .name("Stop")
            .build(spec["id"], version=1)
        ]

    @hookimpl
    def register_definition_formats(self) -> list[DefinitionFormatSpec]:
        return [DefinitionFormatSpec("flow", (".flow",), self.load, summary="test flows")]


@pytest.mark.usefixtures("hang_guard")
@pytest.mark.parametrize(
    ("paths", "env"),
    [
        (["defs"], {}),
        ([], {"WFE_WORKER_PATHS": os.pathsep.join(["defs/b.flow", "defs/nested"])}),
    ],
    ids=["arguments", "environment"],
)
def test_worker_loads_definition_files_from_directories(
    shared, tmp_path: Path, monkeypatch, paths: list[str], env: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fmt = FlowFormat()
    cli = h.Cli(h.registry_with(("shared", shared), ("flows", fmt)), {"WFE_PERSISTENCE": "shared"})
    root = tmp_path / "defs"
    (root / "nested").mkdir(parents=True)
    (root / "b.flow").write_text('{"id": "b"}', encoding="utf-8")
    (root / "nested" / "a.flow").write_text('{"id": "a"}', encoding="utf-8")
    (root / "README.md").write_text("not a definition", encoding="utf-8")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "broken.flow").write_text("not JSON", encoding="utf-8")
    [definition] = fmt.load(root / "b.flow", None)
    workflow_id = h.start(shared.persistence, [definition], "b", {})

    result = cli("worker", *paths, "--set", "GREETING=hi", "--set", "OTHER=x=y", env=env)

    assert result.exit_code == 0, result.output
    assert "2 definitions (b v1, a v1)" in result.stderr  # PATHS order, then name order
    assert fmt.loaded[1:] == [
        ("b.flow", {"GREETING": "hi", "OTHER": "x=y"}),
        ("a.flow", {"GREETING": "hi", "OTHER": "x=y"}),
    ]
    record = _show(cli, workflow_id)
    assert record["status"] == "complete"
    assert record["data"] == {"greeting": "hi"}


# -- what it refuses -----------------------------------------------------------------------------


def test_nothing_to_run_is_a_usage_error(cli) -> None:
    result = cli("worker")
    assert result.exit_code == 2
    assert "nothing to run: give definition files or directories, or --module" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "wfe_no_such_module"], "Error: cannot import module 'wfe_no_such_module': "),
        (["-m", "json"], "Error: module 'json' has no workflow definitions"),
        (["-m", "json:nope"], "Error: module 'json' has no attribute 'nope'"),
        (
            ["-m", "json:__name__"],
            "Error: json:__name__: expected a WorkflowDefinition or a list of them, got str",
        ),
        (["-m", ":x"], "Invalid value for --module: expected a module name, got ':x'"),
        (["--set", "NOVALUE", "-m", "json"], "Invalid value for --set: expected VAR=VALUE"),
        (["--concurrency", "0", "-m", "json"], "Invalid value for '--concurrency'"),
    ],
)
def test_bad_arguments_are_one_error_line(cli, args: list[str], message: str) -> None:
    result = cli("worker", *args)
    assert result.exit_code in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_bad_paths(cli, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "flow.txt").write_text("?", encoding="utf-8")
    empty = cli("worker", "empty")
    assert empty.exit_code == 1
    assert empty.stderr.startswith(
        "Error: no definition files in directory empty (suffixes: none are installed)"
    )
    unknown = cli("worker", "flow.txt")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("Error: no definition format for 'flow.txt'")
    missing = cli("worker", "missing.yaml")
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr


def test_a_module_failing_to_import_shows_its_own_error(cli, tmp_path: Path, monkeypatch) -> None:
    name = f"wfe_test_broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import wfe_missing_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli("worker", "-m", name)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: unexpected ModuleNotFoundError: No module named 'wfe_missing_dependency' "
        "(run with --debug for the traceback)\n"
    )
    sys.modules.pop(name, None)


def test_bad_host_settings_are_one_error_line(cli) -> None:
    result = cli("worker", "-m", "json", env={"WFE_HOST_CONCURRENCY": "0"})
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: environment WFE_HOST_CONCURRENCY: host.concurrency: must be >= 1, got 0\n"
    )


# -- the pieces ----------------------------------------------------------------------------------


def _definition(definition_id: str) -> WorkflowDefinition:
    return WorkflowBuilder(dict).start_with(lambda ctx: None).build(definition_id, version=1)


def test_module_definitions(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"wfe_test_defs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from wfe_core import WorkflowBuilder\n"
        "def _d(i):\n"
        "    return WorkflowBuilder(dict).start_with(lambda ctx: None).build(i, version=1)\n"
        "one = _d('one')\n"
        "alias = one\n"
        "two = _d('two')\n"
        "pair = [one, two]\n"
        "mixed = [one, 3]\n",
        encoding="utf-8",
    )
    try:
        assert [d.id for d in load_module_definitions(name)] == ["one", "two"]
        assert [d.id for d in load_module_definitions(f"{name}:two")] == ["two"]
        assert [d.id for d in load_module_definitions(f"{name}:pair")] == ["one", "two"]
        with pytest.raises(ConfigurationError, match="expected WorkflowDefinition objects"):
            load_module_definitions(f"{name}:mixed")
    finally:
        sys.modules.pop(name, None)


def test_a_definitions_list_wins_over_attributes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"wfe_test_defs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from wfe_core import WorkflowBuilder\n"
        "def _d(i):\n"
        "    return WorkflowBuilder(dict).start_with(lambda ctx: None).build(i, version=1)\n"
        "helper = _d('helper')\n"
        "definitions = [_d('listed')]\n",
        encoding="utf-8",
    )
    try:
        assert [d.id for d in load_module_definitions(name)] == ["listed"]
    finally:
        sys.modules.pop(name, None)


def test_the_working_directory_is_importable(tmp_path: Path, monkeypatch) -> None:
    name = f"wfe_test_cwd_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from wfe_core import WorkflowBuilder\n"
        "flow = WorkflowBuilder(dict).start_with(lambda ctx: None).build('cwd', version=1)\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    # What the console script has: no working directory (nor "") on the path.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        assert [d.id for d in load_module_definitions(name)] == ["cwd"]
    finally:
        sys.modules.pop(name, None)


def test_parse_variables() -> None:
    assert parse_variables(["A=1", "B=", "A=2", " C =x=y"]) == {"A": "2", "B": "", "C": "x=y"}
    with pytest.raises(click.BadParameter):
        parse_variables(["=1"])


def test_definition_files_with_no_format_installed(fakes, tmp_path: Path) -> None:
    registry = fakes.registry_of()
    file = tmp_path / "x.unknown"
    # Files are passed through (their loading reports an unknown suffix); empty dirs fail.
    assert definition_files([file], registry) == [file]
    with pytest.raises(ConfigurationError, match="no definition files in directory"):
        definition_files([tmp_path], registry)


def test_unknown_suffix_error_comes_from_the_registry(fakes, tmp_path: Path) -> None:
    with pytest.raises(ProviderNotFoundError, match="installed suffixes: none"):
        fakes.registry_of().definition_format_for(tmp_path / "a.yaml")


# -- real processes on SQLite --------------------------------------------------------------------


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _worker_process(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
    # A file rather than a pipe: the test reads it while the worker runs.
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [*h.wfe_command(), "worker", *args],
            cwd=tmp_path,
            env=h.clean_environ(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    return process, log


def _stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    try:
        stdout, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, stdout


def test_worker_process_on_the_default_sqlite_store(tmp_path: Path) -> None:
    pytest.importorskip("wfe_sqlite")
    name = f"wfe_test_flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        FLOWS.replace('    .then(stop_soon).name("Stop")\n', ""), encoding="utf-8"
    )
    worker, log = _worker_process(tmp_path, "--module", name)
    try:
        _wait_for(lambda: "Stop with Ctrl+C." in log.read_text(), 60, "the worker to start")
        [announce] = [line for line in log.read_text().splitlines() if "Ctrl+C" in line]
        assert "persistence sqlite (sqlite:///.wfe/wfe.db)" in announce

        # Another process (this one) starts a workflow in the same store.
        url = f"sqlite:///{tmp_path / '.wfe' / 'wfe.db'}"
        spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        flows = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(flows)

        async def start() -> str:
            from wfe_host import WorkflowHost

            settings = {"persistence": url, "host": {"run_workers": False}}
            async with WorkflowHost.from_settings(settings) as host:
                host.register(flows.job)
                workflow_id: str = await host.start_workflow("job", data={"name": "ann"})
                return workflow_id

        workflow_id = anyio.run(start)

        def stored() -> Any:
            # Read in this process: polling with `wfe workflows show` would be slow.
            async def read() -> Any:
                from wfe_host import WorkflowHost

                settings = {"persistence": url, "host": {"run_workers": False}}
                async with WorkflowHost.from_settings(settings) as host:
                    return await host.get_workflow(workflow_id)

            return anyio.run(read)

        _wait_for(
            lambda: any(p.status == "waiting_for_event" for p in stored().pointers),
            60,
            "the workflow to wait for its event",
        )
        published = h.wfe_process("events", "publish", "go", "ann", '{"n": 2}', cwd=tmp_path)
        assert published.returncode == 0, published.stderr
        _wait_for(lambda: stored().status == "complete", 60, "the workflow to complete")
        shown = h.wfe_process("workflows", "show", workflow_id, "--json", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout)
        assert record["status"] == "complete"
        assert record["data"] == {"name": "ann", "greeting": "hello ann", "go": {"n": 2}}
    finally:
        code, stdout = _stop(worker, signal.SIGTERM)
    errors = log.read_text()
    assert code == 0, errors
    assert "Traceback" not in errors
    assert errors.splitlines()[-1] == "wfe worker: stopped"
    assert "workflow " + workflow_id in errors  # the engine logs at INFO by default
    assert stdout == ""


def test_worker_process_stops_on_ctrl_c(tmp_path: Path) -> None:
    pytest.importorskip("wfe_sqlite")
    name = f"wfe_test_flows_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FLOWS, encoding="utf-8")
    worker, log = _worker_process(tmp_path, "-m", name, "--log-level", "warning")
    try:
        _wait_for(lambda: "Stop with Ctrl+C." in log.read_text(), 60, "the worker to start")
    finally:
        code, _ = _stop(worker, signal.SIGINT)
    errors = log.read_text()
    assert code == 0, errors
    assert errors.splitlines()[-2:] == [
        "wfe worker: SIGINT received, stopping (send it again to stop at once)",
        "wfe worker: stopped",
    ]


class _SlowToClose:
    """Stands in for a host whose shutdown hangs (a provider that does not close)."""

    #: What the stopping line reads.
    running_workflows = 0
    options = HostOptions()

    def __init__(self) -> None:
        self.closed = False

    async def __aenter__(self) -> _SlowToClose:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.sleep(60)
        self.closed = True


@pytest.mark.usefixtures("hang_guard")
def test_a_second_signal_cuts_the_shutdown_short() -> None:
    from wfe_host.cli.worker import _serve_until_signalled

    host = _SlowToClose()

    def ready() -> None:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)

    started = time.monotonic()
    name, forced = anyio.run(_serve_until_signalled, host, ready)  # type: ignore[arg-type]
    assert (name, forced) == ("SIGTERM", True)
    assert not host.closed
    assert time.monotonic() - started < 30
