"""Options and URL parsing of the Valkey providers.

This module imports nothing heavy (no valkey client): the plugin imports it to name the
options class, and listing providers must stay fast.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from wfe_core.errors import ConfigurationError
from wfe_core.spi import OptionChecks, UrlOptions, redact_password

__all__ = ["DEFAULT_URL", "SCHEMES", "Target", "ValkeyOptions", "parse_url"]

#: The server used when no URL is given.
DEFAULT_URL = "valkey://127.0.0.1:6379/0"

#: URL schemes the providers accept (``s`` for TLS).
SCHEMES = ("valkey", "valkeys", "redis", "rediss")

# Key prefixes become part of every key and of the hash tag that keeps a queue's keys in one
# cluster slot: no braces, spaces or colons at the ends.
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


_checks = OptionChecks("valkey")
_seconds = _checks.seconds()
_seconds_or_zero = _checks.seconds(allow_zero=True)


def _prefix_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _PREFIX.match(value) or value.endswith(":"):
        return (
            "must be letters, digits, '.', '_', '-' or ':', starting with a letter or digit and"
            f" not ending with ':', got {value!r}"
        )
    return None


@attrs.frozen
class ValkeyOptions:
    """Tunables shared by the Valkey lock, queue and lifecycle publisher.

    Invalid values raise :class:`~wfe_core.errors.ConfigurationError` naming the field. Every
    field can also be given as a query parameter of the URL
    (``valkey://host:6379/0?key_prefix=orders&retry_attempts=3``); the URL wins.
    """

    #: Starts every key and channel, so several deployments can share one server (and one
    #: database number). The queue keys of one queue share the hash tag ``{<prefix>:<queue>}``,
    #: so they stay in one slot of a cluster.
    key_prefix: str = attrs.field(default="wfe", validator=_checks.check(_prefix_problem))
    #: Seconds to wait for a connection to open, and for a reply to an ordinary command.
    socket_timeout: float = attrs.field(default=5.0, validator=_seconds)
    #: How often (seconds) an idle pooled connection is checked with ``PING`` before it is used
    #: again (0: never), so a connection the server dropped is replaced instead of failing.
    health_check_interval: float = attrs.field(
        default=10.0, validator=_checks.seconds(allow_zero=True)
    )
    #: Attempts of one operation when the connection fails (1: no retry). Between attempts the
    #: provider waits with exponential, jittered back-off from ``retry_initial_wait`` up to
    #: ``retry_max_wait`` seconds, and gives up after ``retry_timeout`` seconds in all.
    retry_attempts: int = attrs.field(default=10, validator=_checks.count(1))
    retry_initial_wait: float = attrs.field(default=0.05, validator=_seconds)
    retry_max_wait: float = attrs.field(default=2.0, validator=_seconds)
    retry_timeout: float = attrs.field(default=30.0, validator=_seconds)
    #: Longest single wait (seconds) of a blocking dequeue before it looks at the queue again.
    #: Enqueues and requeues wake waiting consumers at once; this bound is how soon a consumer
    #: finds an item whose delivery lapsed (its consumer died), or work after a server restart.
    max_block: float = attrs.field(default=1.0, validator=_seconds)
    #: Lifecycle events also go to a stream capped at about this many entries, for consumers
    #: that need to replay what they missed (``ValkeyLifecycle.history``). 0: pub/sub only.
    lifecycle_stream_length: int = attrs.field(default=0, validator=_checks.count(0))


@attrs.frozen
class Target:
    """Where the server is (a URL for the client, without our options) and the options."""

    url: str = attrs.field(repr=False)
    #: The URL without a password, for messages.
    display: str
    options: ValkeyOptions


# Field name -> the type its URL query value is read as (annotations are strings here).
_KINDS: dict[str, type] = {"str": str, "int": int, "float": float}
_URL_OPTIONS = UrlOptions(
    "valkey",
    ValkeyOptions,
    {field.name: _KINDS[str(field.type)] for field in attrs.fields(ValkeyOptions)},
)


def parse_url(url: str | None, options: ValkeyOptions | None = None) -> Target:
    """Resolve a ``valkey://[user:password@]host[:port][/db][?option=value...]`` URL (also
    ``valkeys://``, ``redis://``, ``rediss://``).

    Raises :class:`~wfe_core.errors.ConfigurationError` with the reason for anything else.
    """
    options = _URL_OPTIONS.options(options)
    url = _URL_OPTIONS.text(DEFAULT_URL if url is None else url)
    shown = redact_password(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"valkey url {shown!r}: the scheme must be one of "
            f"{', '.join(SCHEMES)} (valkey://127.0.0.1:6379/0)"
        )
    _URL_OPTIONS.host_and_port(parts, shown)
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigurationError(
            f"valkey url {shown!r}: the path must be a database number (/0), got /{path}"
        )
    options, _ = _URL_OPTIONS.apply_query(options, parts.query, shown)
    # The client understands valkey(s):// and redis(s):// alike; our options stay out of it.
    client_url = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
    return Target(client_url, redact_password(client_url), options)
