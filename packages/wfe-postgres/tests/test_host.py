"""End to end through settings: the host finds the PostgreSQL persistence by name and by URL
scheme, with options and a password file, and the ``wfe`` CLI lists it and reads from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus
from wfe_core.errors import ConfigurationError
from wfe_postgres import PostgresPersistence

wfe_host = pytest.importorskip("wfe_host", reason="the end-to-end tests need wfe-host")

pytestmark = pytest.mark.anyio


@attrs.define
class Order:
    steps: list[str] = attrs.Factory(list)


def validate(ctx: StepContext) -> None:
    ctx.data.steps.append("validate")


async def ship(ctx: StepContext) -> None:
    ctx.data.steps.append("ship")


def _memory_rest() -> dict[str, str]:
    return {"lock": "memory", "queue": "memory"}


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_a_url_selects_the_postgres_persistence(db_url: str, scheme: str) -> None:
    url = db_url.replace("postgresql://", f"{scheme}://", 1)
    definition = WorkflowBuilder(Order).start_with(validate).then(ship).build("order")
    async with wfe_host.WorkflowHost.from_settings({"persistence": url, **_memory_rest()}) as host:
        assert isinstance(host.persistence, PostgresPersistence)
        host.register(definition)
        workflow_id = await host.start_workflow("order", data=Order())
        finished = await host.wait_for_workflow(workflow_id, timeout=30)
        assert finished.status == WorkflowStatus.COMPLETE
        assert finished.data.steps == ["validate", "ship"]
    async with PostgresPersistence(db_url) as persistence:
        assert (await persistence.get_workflow(workflow_id)).status == WorkflowStatus.COMPLETE


def test_the_lock_and_queue_follow_the_postgres_persistence(db_url: str) -> None:
    from wfe_postgres import PostgresLock, PostgresQueue

    resolved = wfe_host.bootstrap.resolve({"persistence": db_url})
    assert isinstance(resolved.persistence, PostgresPersistence)
    assert isinstance(resolved.lock, PostgresLock)
    assert isinstance(resolved.queue, PostgresQueue)


async def test_settings_by_name_with_options(db_url: str, schema: str, tmp_path: Path) -> None:
    base, _, _ = db_url.partition("?")
    secret = tmp_path / "password"
    secret.write_text("unused-with-trust-auth\n")
    settings = {
        "persistence": {
            "provider": "postgres",
            "url": base,
            "options": {
                "schema": schema,
                "max_pool_size": 3,
                "application_name": "wfe-test",
                "password_file": str(secret),
            },
        },
        **_memory_rest(),
    }
    resolved = wfe_host.bootstrap.resolve(settings)
    persistence = resolved.persistence
    assert isinstance(persistence, PostgresPersistence)
    assert persistence.target.options.schema == schema
    assert persistence.target.options.max_pool_size == 3
    async with persistence:
        assert (await persistence.check_schema()).up_to_date


def test_a_bad_option_in_settings_names_the_field(db_url: str) -> None:
    settings = {
        "persistence": {"provider": "postgres", "url": db_url, "options": {"max_pool_size": 0}},
        **_memory_rest(),
    }
    with pytest.raises(ConfigurationError, match="max_pool_size"):
        wfe_host.bootstrap.resolve(settings)


def _wfe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    wfe = Path(sys.executable).with_name("wfe")
    return subprocess.run(
        [str(wfe), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


def test_wfe_providers_lists_postgres() -> None:
    result = _wfe("providers", "--json", env={})
    assert result.returncode == 0, result.stderr
    specs = [s for s in json.loads(result.stdout) if s["name"] == "postgres"]
    assert [s["kind"] for s in specs][:1] == ["persistence"]
    assert specs[0]["url_schemes"] == ["postgresql", "postgres"]
    assert "fencing" in specs[0]["capabilities"]


async def test_wfe_workflows_list_reads_a_url_from_a_secret_file(
    db_url: str, tmp_path: Path
) -> None:
    async with PostgresPersistence(db_url) as persistence:
        from wfe_core.testing.conformance.persistence import make_instance

        instance = make_instance(reference="from-cli")
        await persistence.create_workflow(instance)
    url_file = tmp_path / "url"
    url_file.write_text(db_url + "\n")
    result = _wfe(
        "workflows",
        "list",
        "--json",
        env={
            "WFE_PERSISTENCE_URL_FILE": str(url_file),
            "WFE_LOCK": "memory",
            "WFE_QUEUE": "memory",
        },
    )
    assert result.returncode == 0, result.stderr
    assert instance.id in result.stdout
