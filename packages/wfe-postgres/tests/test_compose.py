"""compose.yaml's PostgreSQL, as far as it can be checked without Docker: a server set up as the
``postgres:18`` image sets itself up from the file's environment (a password-checked superuser
and its database, scram-sha-256 over TCP), and the URL the file documents, pointed at it, runs
workflows from a host and from the ``wfe`` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import psycopg
import pytest
from psycopg import sql

from wfe_core import StepContext, WorkflowBuilder, WorkflowStatus
from wfe_postgres.testing import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator

wfe_host = pytest.importorskip("wfe_host", reason="the end-to-end tests need wfe-host")

COMPOSE = Path(__file__).parents[3] / "compose.yaml"


def postgres_service() -> dict[str, str]:
    """The postgres service's environment, its published port and the documented URL."""
    text = COMPOSE.read_text()
    service = text[text.index("\n  postgres:") : text.index("\n  valkey:")]
    found = dict(re.findall(r"^\s+(POSTGRES_\w+): (\S+)$", service, re.MULTILINE))
    [port] = re.findall(r'"127\.0\.0\.1:(\d+):5432"', service)
    [url] = re.findall(r"WFE_PERSISTENCE=(postgresql://\S+)", text)
    return {**found, "port": port, "url": url}


def test_the_documented_url_matches_the_service() -> None:
    service = postgres_service()
    user, password, database = (
        service["POSTGRES_USER"],
        service["POSTGRES_PASSWORD"],
        service["POSTGRES_DB"],
    )
    assert (
        service["url"] == f"postgresql://{user}:{password}@127.0.0.1:{service['port']}/{database}"
    )


@pytest.fixture(scope="module")
def image_like_server() -> Iterator[PostgresServer]:
    """A server as the image leaves it: the compose user a superuser with a password, owning
    its database, and passwords checked (scram-sha-256) for every connection but the test
    harness's own superuser."""
    service = postgres_service()
    with PostgresServer(fast=True) as server:
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(
            "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                    sql.Identifier(service["POSTGRES_USER"]),
                    sql.Literal(service["POSTGRES_PASSWORD"]),
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(service["POSTGRES_DB"]),
                    sql.Identifier(service["POSTGRES_USER"]),
                )
            )
            conn.execute("SELECT pg_reload_conf()")
        yield server


def documented_url(server: PostgresServer, *, password: str | None = None) -> str:
    url = postgres_service()["url"].replace(":5432/", f":{server.port}/")
    if password is not None:
        url = re.sub(r":[^:@/]+@", f":{password}@", url, count=1)
    return url


@attrs.define
class Release:
    steps: list[str] = attrs.Factory(list)


def build(ctx: StepContext) -> None:
    ctx.data.steps.append("build")


def publish(ctx: StepContext) -> None:
    ctx.data.steps.append("publish")


def wfe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("wfe")), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", **env},
        check=False,
    )


@pytest.mark.anyio
async def test_the_documented_url_runs_workflows(image_like_server: PostgresServer) -> None:
    url = documented_url(image_like_server)
    definition = WorkflowBuilder(Release).start_with(build).then(publish).build("release")
    # Only the URL, as the file's comment says: the lock and the queue follow the persistence.
    async with wfe_host.WorkflowHost.from_settings({"persistence": url}) as host:
        host.register(definition)
        workflow_id = await host.start_workflow("release", data=Release())
        finished = await host.wait_for_workflow(workflow_id, timeout=60)
    assert finished.status == WorkflowStatus.COMPLETE
    assert finished.data.steps == ["build", "publish"]
    with psycopg.connect(url) as conn:
        # "the tables go in the schema wfe, created on first start"
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'wfe'"
        ).fetchone()
        assert tables is not None
        assert tables[0] > 0
    listed = wfe("workflows", "list", "--json", env={"WFE_PERSISTENCE": url})
    assert listed.returncode == 0, listed.stderr
    assert workflow_id in listed.stdout


def test_a_wrong_password_is_a_clear_error(image_like_server: PostgresServer) -> None:
    url = documented_url(image_like_server, password="not-the-password") + "?connect_timeout=2"
    result = wfe("workflows", "list", env={"WFE_PERSISTENCE": url})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # The server's reason, not only a time-out; the password is not printed back.
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert 'password authentication failed for user "wfe"' in line
    assert "not-the-password" not in result.stderr
