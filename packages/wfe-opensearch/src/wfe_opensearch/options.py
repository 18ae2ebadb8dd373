"""Options and URL parsing of the OpenSearch search index.

This module imports nothing heavy (no opensearch-py): the plugin imports it to name the
options class, and listing providers must stay fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import attrs

from wfe_core.errors import ConfigurationError
from wfe_core.spi import OptionChecks, UrlOptions

__all__ = ["DEFAULT_URL", "Connection", "OpenSearchOptions", "parse_url"]

#: The node used when no URL is given.
DEFAULT_URL = "http://127.0.0.1:9200"

Refresh = Literal["false", "true", "wait_for"]
_REFRESH: tuple[str, ...] = ("false", "true", "wait_for")
# OpenSearch index names: lower case, no spaces or \ / * ? " < > | , # : and not starting
# with - _ +.
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


_checks = OptionChecks("opensearch")


def _positive_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return f"must be a positive number, got {value!r}"
    return None


def _prefix_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _PREFIX.match(value):
        return (
            "must be lower-case letters, digits, '.', '_' or '-', starting with a letter or"
            f" digit, got {value!r}"
        )
    return None


def _optional_text_problem(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    return None


_positive = _checks.check(_positive_problem)
_prefix = _checks.check(_prefix_problem)
_refresh = _checks.one_of(_REFRESH)
_optional_text = _checks.check(_optional_text_problem)
_count = _checks.count


@attrs.frozen
class OpenSearchOptions:
    """Tunables of the OpenSearch search index.

    Invalid values raise :class:`~wfe_core.errors.ConfigurationError` naming the field. Every
    field can also be given as a query parameter of the URL
    (``http://localhost:9200/?index_prefix=orders&number_of_replicas=0``); the URL wins.
    """

    #: Names the index (``<prefix>-workflows-v<N>``) and its alias (``<prefix>-workflows``),
    #: so several deployments can share one cluster.
    index_prefix: str = attrs.field(default="wfe", validator=_prefix)
    #: Shards of the index, fixed when it is created.
    number_of_shards: int = attrs.field(default=1, validator=_count(1))
    #: Replicas of each shard. Keep 1 or more on a cluster; use 0 on a single node (a replica
    #: can never be placed there, so the index stays yellow).
    number_of_replicas: int = attrs.field(default=1, validator=_count(0))
    #: Whether a write waits for the index to show it: ``false`` (the default: searches see a
    #: write within the index refresh interval, about a second), ``wait_for`` (the write
    #: returns once searchable, without forcing a refresh) or ``true`` (force a refresh per
    #: write: only for tests and tiny indices).
    refresh: Refresh = attrs.field(default="false", validator=_refresh)
    #: Seconds one request may take before it fails.
    timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Retries of a request the client makes on a connection error before it fails (the
    #: host's index queue retries a failed update later, with back-off, anyway).
    max_retries: int = attrs.field(default=1, validator=_count(0))
    #: HTTP basic authentication; the URL's ``user:password@`` wins. ``password_file`` names a
    #: file holding the password (a secret mounted by an orchestrator).
    username: str | None = attrs.field(default=None, validator=_optional_text)
    password: str | None = attrs.field(default=None, validator=_optional_text, repr=False)
    password_file: str | None = attrs.field(default=None, validator=_optional_text)
    #: For ``https``: verify the node's certificate (with ``ca_certs``, a PEM bundle path, or
    #: the system's trust store).
    verify_certs: bool = True
    ca_certs: str | None = attrs.field(default=None, validator=_optional_text)


@attrs.frozen
class Connection:
    """Where and how to reach the cluster, resolved from a URL and options."""

    url: str
    options: OpenSearchOptions
    auth: tuple[str, str] | None = attrs.field(default=None, repr=False)

    @property
    def alias(self) -> str:
        return f"{self.options.index_prefix}-workflows"


# Not the credentials: a password in a query string ends up in logs.
_URL_OPTIONS = UrlOptions(
    "opensearch",
    OpenSearchOptions,
    {
        "index_prefix": str,
        "number_of_shards": int,
        "number_of_replicas": int,
        "refresh": str,
        "timeout": float,
        "max_retries": int,
        "verify_certs": bool,
        "ca_certs": str,
    },
)


def parse_url(url: str | None, options: OpenSearchOptions | None = None) -> Connection:
    """Resolve an ``http(s)://[user:password@]host[:port][/?option=value...]`` URL.

    Raises :class:`~wfe_core.errors.ConfigurationError` with the reason for anything else.
    """
    options = _URL_OPTIONS.options(options)
    url = _URL_OPTIONS.text(DEFAULT_URL if url is None else url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(
            f"opensearch url {url!r}: the scheme must be http or https (http://127.0.0.1:9200)"
        )
    host, port = _URL_OPTIONS.host_and_port(parts, url)
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"opensearch url {url!r}: a path is not allowed (set index_prefix to name the index)"
        )
    options, _ = _URL_OPTIONS.apply_query(options, parts.query, url)
    username = unquote(parts.username) if parts.username else options.username
    password = unquote(parts.password) if parts.password is not None else options.password
    if password is None and options.password_file is not None:
        try:
            password = Path(options.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"opensearch option password_file {options.password_file!r}: {exc.strerror}"
            ) from None
    if password is not None and username is None:
        raise ConfigurationError("opensearch: a password is set but no username")
    netloc = host if ":" not in host else f"[{host}]"
    base = f"{scheme}://{netloc}:{port or 9200}"
    auth = (username, password or "") if username is not None else None
    return Connection(base, options, auth)
