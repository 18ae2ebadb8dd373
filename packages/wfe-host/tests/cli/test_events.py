"""``wfe events publish``: the stored event, its data and effective date, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import click
import pytest
import wfe_host_tests_cli_store as h

from wfe_host.cli.events import parse_data, parse_effective_date

if TYPE_CHECKING:
    from pathlib import Path

DEFS = h.definitions()


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return h.SharedStore()


@pytest.fixture
def cli(shared):
    return h.Cli(h.registry_with(("shared", shared)), {"WFE_PERSISTENCE": "shared"})


def _event(shared, event_id: str):
    return anyio.run(shared.persistence.get_event, event_id)


def test_publish_stores_the_event_and_prints_its_id(cli, shared) -> None:
    before = datetime.now(UTC)
    result = cli("events", "publish", "approval", "order-42", '{"approved": true, "by": "ann"}')
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    event_id = result.stdout.strip()
    assert result.stdout == f"{event_id}\n"
    event = _event(shared, event_id)
    assert (event.name, event.key) == ("approval", "order-42")
    assert event.data == {"approved": True, "by": "ann"}
    assert before <= event.time <= datetime.now(UTC)
    assert not event.is_processed


def test_publish_without_data(cli, shared) -> None:
    result = cli("events", "publish", "tick", "1")
    assert result.exit_code == 0, result.output
    assert _event(shared, result.stdout.strip()).data is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("42", 42), ('"yes"', "yes"), ("[1, 2]", [1, 2]), ("null", None), ("{}", {})],
)
def test_data_is_any_json_value(cli, shared, text: str, value: object) -> None:
    result = cli("events", "publish", "n", "k", text)
    assert result.exit_code == 0, result.output
    assert _event(shared, result.stdout.strip()).data == value


def test_data_from_stdin(cli, shared) -> None:
    result = cli("events", "publish", "n", "k", "-", input='{"from": "stdin"}\n')
    assert result.exit_code == 0, result.output
    assert _event(shared, result.stdout.strip()).data == {"from": "stdin"}


def test_invalid_json_is_a_usage_error(cli) -> None:
    result = cli("events", "publish", "n", "k", "yes")
    assert result.exit_code == 2
    assert "Invalid value for '[DATA]': not valid JSON" in result.stderr
    assert "Traceback" not in result.output


def test_effective_date(cli, shared) -> None:
    result = cli("events", "publish", "n", "k", "--effective-date", "2026-01-31T09:30:00+02:00")
    assert result.exit_code == 0, result.output
    event = _event(shared, result.stdout.strip())
    assert event.time == datetime(2026, 1, 31, 7, 30, tzinfo=UTC)


def test_bad_effective_date_is_a_usage_error(cli) -> None:
    result = cli("events", "publish", "n", "k", "--effective-date", "yesterday")
    assert result.exit_code == 2
    assert "Invalid value for '--effective-date': expected an ISO 8601 date-time" in (result.stderr)


def test_json_output(cli) -> None:
    result = cli(
        "events",
        "publish",
        "approval",
        "7",
        "[1]",
        "--effective-date",
        "2026-01-31T09:30:00Z",
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record) == {"id", "name", "key", "data", "effective_date"}
    assert (record["name"], record["key"], record["data"]) == ("approval", "7", [1])
    assert record["effective_date"] == "2026-01-31T09:30:00+00:00"


def test_published_event_reaches_a_waiting_workflow(cli, shared) -> None:
    """Publish from the CLI; a host on the same store (a worker) delivers it."""
    store = shared.persistence
    workflow_id = h.start(store, DEFS, "approval", {"name": "cy"})
    result = cli("events", "publish", "approval", "cy", '{"ok": 1}')
    assert result.exit_code == 0, result.output

    async def finish(host):
        return await host.wait_for_workflow(workflow_id, timeout=10)

    instance = h.on_host(store, DEFS, finish, run_workers=True)
    assert instance.status == "complete"
    assert instance.data == {"name": "cy", "greeting": "hello cy", "approved": {"ok": 1}}


def test_memory_store_warns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = h.Cli(h.registry_with())("events", "publish", "n", "k")
    assert result.exit_code == 0
    assert result.stderr.startswith("Warning: no persistence is configured")


def test_parse_effective_date_reads_naive_values_as_local_time() -> None:
    parsed = parse_effective_date("2026-06-01T12:00:00")
    assert parsed is not None
    assert parsed.tzinfo is UTC
    assert parsed == datetime(2026, 6, 1, 12).astimezone(UTC)
    assert parse_effective_date("2026-06-01") == datetime(2026, 6, 1).astimezone(UTC)
    assert parse_effective_date(None) is None
    offset = parse_effective_date("2026-06-01T12:00:00-01:00")
    assert offset == datetime(2026, 6, 1, 13, tzinfo=UTC)
    assert offset is not None
    assert offset.utcoffset() == timedelta(0)


def test_parse_data() -> None:
    assert parse_data(None) is None
    assert parse_data('{"a": [1]}') == {"a": [1]}
    with pytest.raises(click.BadParameter, match="JSON quotes"):
        parse_data("{a: 1}")
