"""URLs and options of the OpenSearch index: what is accepted, and one clear error otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wfe_core.errors import ConfigurationError, ProviderError
from wfe_core.models import WorkflowInstance
from wfe_host.bootstrap import resolve
from wfe_opensearch import OpenSearchIndex, OpenSearchOptions
from wfe_opensearch.options import parse_url

if TYPE_CHECKING:
    from pathlib import Path


def test_url_forms() -> None:
    assert parse_url(None).url == "http://127.0.0.1:9200"
    plain = parse_url("http://search.internal")
    assert (plain.url, plain.auth, plain.alias) == (
        "http://search.internal:9200",
        None,
        "wfe-workflows",
    )
    secured = parse_url(
        "https://wfe:s%40cret@search:9443/?index_prefix=orders&number_of_replicas=0"
    )
    assert secured.url == "https://search:9443"
    assert secured.auth == ("wfe", "s@cret")
    assert (secured.alias, secured.options.number_of_replicas) == ("orders-workflows", 0)
    assert "s@cret" not in repr(secured)


def test_password_from_options_and_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    connection = parse_url(
        "http://h:9200", OpenSearchOptions(username="u", password_file=str(secret))
    )
    assert connection.auth == ("u", "from-file")
    assert parse_url("http://h", OpenSearchOptions(username="u", password="p")).auth == ("u", "p")


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("postgresql://h", None, "scheme must be http or https"),
        ("http://", None, "a host is required"),
        ("http://h:9200/myindex", None, "a path is not allowed"),
        ("http://h/?shards=2", None, "unknown parameter 'shards'"),
        ("http://h/?number_of_replicas=two", None, "number_of_replicas='two' is not a valid int"),
        ("http://h/?number_of_shards=0", None, "number_of_shards must be an integer of at least 1"),
        ("http://h/?refresh=always", None, "refresh must be one of false, true, wait_for"),
        ("http://h/?index_prefix=Bad%20Name", None, "index_prefix must be lower-case"),
        ("http://h/?verify_certs=maybe", None, "verify_certs='maybe'"),
        ("http://h", {"password": "p"}, "a password is set but no username"),
        ("http://h", {"username": "u", "password_file": "/nonexistent/pw"}, "password_file"),
        ("http://h:99999", None, "Port out of range"),
    ],
)
def test_bad_urls_and_options_name_the_problem(
    url: str, options: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        parse_url(url, OpenSearchOptions(**options) if options else None)  # type: ignore[arg-type]


def test_options_validate_their_fields() -> None:
    with pytest.raises(ConfigurationError, match="timeout must be a positive number"):
        OpenSearchOptions(timeout=0)
    with pytest.raises(ConfigurationError, match="options must be an OpenSearchOptions"):
        parse_url("http://h", {"timeout": 1})  # type: ignore[arg-type]


def test_settings_select_opensearch_by_url_and_structure_its_options() -> None:
    resolved = resolve(
        {"search": {"url": "http://h:9200", "options": {"index_prefix": "orders", "timeout": 3}}}
    )
    assert isinstance(resolved.search, OpenSearchIndex)
    assert resolved.search.alias == "orders-workflows"
    assert resolved.search.url == "http://h:9200"
    with pytest.raises(ConfigurationError, match="index_prefix"):
        resolve({"search": {"url": "http://h:9200", "options": {"index_prefix": "A B"}}})


@pytest.mark.anyio
async def test_an_unreachable_node_is_a_provider_error() -> None:
    # Nothing listens on port 1 of the loopback: the connection is refused at once.
    options = OpenSearchOptions(timeout=2, max_retries=0)
    async with OpenSearchIndex("http://127.0.0.1:1", options) as index:
        with pytest.raises(ProviderError, match=r"127\.0\.0\.1:1"):
            await index.search("anything")
        with pytest.raises(ProviderError):
            await index.index_workflow(WorkflowInstance(definition_id="x", version=1))


@pytest.mark.anyio
async def test_bad_filters_are_value_errors() -> None:
    async with OpenSearchIndex("http://127.0.0.1:1", OpenSearchOptions(max_retries=0)) as index:
        with pytest.raises(ValueError, match="unknown search filters"):
            await index.search(filters={"colour": "red"})
        with pytest.raises(ValueError, match="created_after must be a datetime"):
            await index.search(filters={"created_after": "yesterday"})
