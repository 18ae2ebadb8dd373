"""Options and URL parsing of the OpenSearch search index.

This module imports nothing heavy (no opensearch-py): the plugin imports it to name the
options class, and listing providers must stay fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from wfe_core.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "Connection", "OpenSearchOptions", "parse_url"]

#: The node used when no URL is given.
DEFAULT_URL = "http://127.0.0.1:9200"

Refresh = Literal["false", "true", "wait_for"]
_REFRESH: tuple[str, ...] = ("false", "true", "wait_for")
# OpenSearch index names: lower case, no spaces or \ / * ? " < > | , # : and not starting
# with - _ +.
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(
            f"opensearch option {attribute.name} must be a positive number, got {value!r}"
        )


def _count(minimum: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(
                f"opensearch option {attribute.name} must be an integer of at least {minimum}, "
                f"got {value!r}"
            )

    return check


def _prefix(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not _PREFIX.match(value):
        raise ConfigurationError(
            f"opensearch option index_prefix must be lower-case letters, digits, '.', '_' or "
            f"'-', starting with a letter or digit, got {value!r}"
        )


def _refresh(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in _REFRESH:
        raise ConfigurationError(
            f"opensearch option refresh must be one of {', '.join(_REFRESH)}, got {value!r}"
        )


def _optional_text(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(
            f"opensearch option {attribute.name} must be a string, got {type(value).__name__}"
        )


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


_FIELD_KINDS: dict[str, type] = {
    "index_prefix": str,
    "number_of_shards": int,
    "number_of_replicas": int,
    "refresh": str,
    "timeout": float,
    "max_retries": int,
    "verify_certs": bool,
    "ca_certs": str,
}


def _coerce(raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    return kind(raw)


def parse_url(url: str | None, options: OpenSearchOptions | None = None) -> Connection:
    """Resolve an ``http(s)://[user:password@]host[:port][/?option=value...]`` URL.

    Raises :class:`~wfe_core.errors.ConfigurationError` with the reason for anything else.
    """
    if options is None:
        options = OpenSearchOptions()
    elif not isinstance(options, OpenSearchOptions):
        raise ConfigurationError(
            f"opensearch options must be an OpenSearchOptions, got {type(options).__name__}"
        )
    if url is None:
        url = DEFAULT_URL
    if not isinstance(url, str):
        raise ConfigurationError(f"opensearch url must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(
            f"opensearch url {url!r}: the scheme must be http or https (http://127.0.0.1:9200)"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigurationError(f"opensearch url {url!r}: {exc}") from None
    if not host:
        raise ConfigurationError(f"opensearch url {url!r}: a host is required")
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"opensearch url {url!r}: a path is not allowed (set index_prefix to name the index)"
        )
    overrides: dict[str, Any] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        kind = _FIELD_KINDS.get(name)
        if kind is None:
            raise ConfigurationError(
                f"opensearch url {url!r}: unknown parameter {name!r} "
                f"(known: {', '.join(sorted(_FIELD_KINDS))})"
            )
        try:
            overrides[name] = _coerce(raw, kind)
        except ValueError:
            raise ConfigurationError(
                f"opensearch url {url!r}: parameter {name}={raw!r} is not a valid {kind.__name__}"
            ) from None
    if overrides:
        try:
            options = attrs.evolve(options, **overrides)
        except ConfigurationError as exc:
            raise ConfigurationError(f"opensearch url {url!r}: {exc}") from None
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
