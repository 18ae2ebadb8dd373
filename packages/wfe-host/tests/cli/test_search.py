"""``wfe search`` without a search provider: the persistence scan, with the same filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import wfe_host_tests_cli_store as h

DEFS = h.definitions()


@pytest.fixture
def shared(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    return h.SharedStore()


@pytest.fixture
def cli(shared):
    return h.Cli(h.registry_with(("shared", shared)), {"WFE_PERSISTENCE": "shared"})


@pytest.fixture
def stored(shared) -> dict[str, str]:
    store = shared.persistence
    return {
        "ann": h.start(
            store, DEFS, "greet", {"name": "ann", "city": "Oslo"}, reference="r-1", run=True
        ),
        "bob": h.start(
            store, DEFS, "greet", {"name": "bob", "city": "Lima"}, reference="r-2", run=True
        ),
        "cy": h.start(store, DEFS, "approval", {"name": "cy", "city": "Oslo"}, reference="r-3"),
    }


def _ids(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line.split()[0] for line in result.stdout.splitlines()[1:]]


def test_search_by_text_and_filters(cli, stored) -> None:
    assert set(_ids(cli("search", "oslo"))) == {stored["ann"], stored["cy"]}
    assert _ids(cli("search", "oslo", "--status", "complete")) == [stored["ann"]]
    assert _ids(cli("search", "--data", "city=Lima")) == [stored["bob"]]
    assert _ids(cli("search", "--data", "city=Oslo", "--definition", "approval")) == [stored["cy"]]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(_ids(cli("search", "--created-before", tomorrow))) == 3
    assert _ids(cli("search", "--created-after", tomorrow)) == []
    assert len(_ids(cli("search", "--completed-before", tomorrow))) == 2
    result = cli("search", "walrus")
    assert (result.exit_code, result.stderr) == (0, "no matching workflows\n")


def test_search_json_pages(cli, stored) -> None:
    result = cli("search", "--take", "2", "--json")
    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    assert (page["total"], page["skip"], page["take"], len(page["items"])) == (3, 0, 2, 2)
    assert page["items"][0]["id"] == stored["cy"]  # newest first
    assert "pointers" not in page["items"][0]


def test_search_refuses_a_bad_data_filter(cli) -> None:
    result = cli("search", "--data", "city")
    assert result.exit_code == 2
    assert "'city' is not PATH=VALUE" in result.output
