"""Options and URL parsing of the PostgreSQL providers.

This module imports nothing heavy (no psycopg): the plugin imports it to name the options
class, and listing providers must stay fast.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import attrs

from wfe_core.errors import ConfigurationError
from wfe_core.spi import (
    OptionChecks,
    UnreadableFileError,
    UrlOptions,
    read_regular_file,
    redact_password,
)

__all__ = ["SCHEMES", "DatabaseTarget", "PostgresOptions", "parse_url", "redact"]

#: The URL schemes the providers take (``postgres://`` is libpq's alias).
SCHEMES = ("postgresql", "postgres")

#: The largest password file read: 64 KiB.
_MAX_PASSWORD_BYTES = 64 * 1024
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


_checks = OptionChecks("postgres")
_seconds = _checks.seconds()
_seconds_or_zero = _checks.seconds(allow_zero=True, note=" (0: no limit)")
_positive_int = _checks.count(1)
_bool = _checks.boolean()


def _schema_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        return (
            "must be a lower-case SQL identifier (letters, digits and underscores, at most 63,"
            f" not starting with a digit), got {value!r}"
        )
    return None


def _application_name_problem(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 63 or not value.isprintable():
        return f"must be printable text of at most 63 characters, got {value!r}"
    return None


def _path_problem(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value or "\x00" in value):
        return f"must be the path of a file, got {value!r}"
    return None


_schema = _checks.check(_schema_problem)
_application_name = _checks.check(_application_name_problem)
_optional_path = _checks.check(_path_problem)


@attrs.frozen
class PostgresOptions:
    """Tunables shared by the PostgreSQL persistence, queue and lock.

    Invalid values raise :class:`~wfe_core.errors.ConfigurationError` naming the field. Every
    field can also be given as a query parameter of the URL
    (``postgresql://host/db?schema=wfe_test&max_pool_size=20``); the URL wins over these
    options. Other query parameters (``sslmode``, ``target_session_attrs``, ...) go to libpq.
    """

    #: The schema holding the tables (created by the migrations). Several deployments can
    #: share one database under different schemas.
    schema: str = attrs.field(default="wfe", validator=_schema)
    #: Connections the pool keeps open, and the most it opens. The providers of one process
    #: that use the same URL and options share one pool.
    min_pool_size: int = attrs.field(default=1, validator=_positive_int)
    max_pool_size: int = attrs.field(default=10, validator=_positive_int)
    #: Seconds to wait for a new connection, and for a free connection of the pool.
    connect_timeout: float = attrs.field(default=10.0, validator=_seconds)
    #: Seconds a statement may run before the server cancels it (0: no limit).
    statement_timeout: float = attrs.field(default=30.0, validator=_seconds_or_zero)
    #: Seconds transient errors (connection lost, server restarting, serialization failure,
    #: too many connections) are retried, with jittered exponential back-off, before an
    #: operation fails with :class:`~wfe_core.errors.ProviderUnavailableError`. 0: no retry.
    retry_timeout: float = attrs.field(default=30.0, validator=_seconds_or_zero)
    #: The ``application_name`` the server shows in ``pg_stat_activity``.
    application_name: str = attrs.field(default="wfe", validator=_application_name)
    #: A file holding the password (a Docker or Kubernetes secret); surrounding whitespace is
    #: stripped. Read each time a connection is opened, so a rotated secret is picked up. Not
    #: together with a password in the URL.
    password_file: str | None = attrs.field(default=None, validator=_optional_path)
    #: Apply the schema migrations on start (under an advisory lock). ``False``: only check,
    #: and refuse to start on a schema that is not up to date, naming what to run.
    migrate: bool = attrs.field(default=True, validator=_bool)

    #: Queue and lock: a waiting dequeue is woken by ``NOTIFY``; it also looks every
    #: ``poll_interval`` seconds (jittered), the pause doubling up to ``max_poll_interval``
    #: while nothing comes, in case a notification is lost. While the listening connection is
    #: down, it looks every ``poll_interval`` seconds.
    poll_interval: float = attrs.field(default=1.0, validator=_seconds)
    max_poll_interval: float = attrs.field(default=30.0, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if self.max_pool_size < self.min_pool_size:
            raise _checks.error("max_pool_size", "must not be smaller than min_pool_size")
        if self.max_poll_interval < self.poll_interval:
            raise _checks.error("max_poll_interval", "must not be smaller than poll_interval")


_URL_OPTIONS = UrlOptions(
    "postgres",
    PostgresOptions,
    {
        "schema": str,
        "min_pool_size": int,
        "max_pool_size": int,
        "connect_timeout": float,
        "statement_timeout": float,
        "retry_timeout": float,
        "application_name": str,
        "password_file": str,
        "migrate": bool,
        "poll_interval": float,
        "max_poll_interval": float,
    },
)


@attrs.frozen
class DatabaseTarget:
    """A parsed URL: the connection string for libpq (without the options' parameters) and
    the options. Hashable: the key of the shared connection pool."""

    #: ``postgresql://...`` as libpq takes it (the password, if any, included).
    conninfo: str
    options: PostgresOptions

    @property
    def display(self) -> str:
        """The URL with its password shown as ``***`` (for messages and logs)."""
        return redact(self.conninfo)

    def password(self) -> str | None:
        """The password from :attr:`PostgresOptions.password_file`, read now; ``None`` when
        no file is set. :class:`~wfe_core.errors.ConfigurationError` when it cannot be read."""
        path = self.options.password_file
        if path is None:
            return None
        try:
            data = read_regular_file(path, _MAX_PASSWORD_BYTES)
        except UnreadableFileError as exc:
            raise ConfigurationError(
                f"postgres option password_file: cannot read {path}: {exc}"
            ) from None
        try:
            return data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"postgres option password_file: {path} is not UTF-8 text"
            ) from None


def redact(url: str) -> str:
    """``url`` with the password replaced by ``***``."""
    return redact_password(url)


def parse_url(url: str | None, options: PostgresOptions | None = None) -> DatabaseTarget:
    """Resolve a ``postgresql://`` (or ``postgres://``) URL and options to a
    :class:`DatabaseTarget`.

    The form is libpq's: ``postgresql://[user[:password]@][host][:port][/database][?param=...]``.
    Query parameters named like :class:`PostgresOptions` fields override ``options``; the
    others are passed to libpq. Raises :class:`~wfe_core.errors.ConfigurationError` with the
    reason for anything else.
    """
    options = _URL_OPTIONS.options(options)
    if url is None:
        raise ConfigurationError(
            "postgres needs a url: postgresql://user@host:5432/database"
            " (set persistence.url or WFE_PERSISTENCE_URL)"
        )
    url = _URL_OPTIONS.text(url)
    shown = redact(url) if "://" in url else url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"postgres url {shown!r}: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(
            f"postgres url {shown!r}: the scheme must be 'postgresql' or 'postgres'"
            " (postgresql://user@host:5432/database)"
        )
    if parts.fragment:
        raise ConfigurationError(f"postgres url {shown!r}: a fragment ('#...') is not allowed")
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if "/" in database:
        raise ConfigurationError(
            f"postgres url {shown!r}: the path must be one database name, got {database!r}"
        )
    if port == 0:
        raise ConfigurationError(f"postgres url {shown!r}: port 0 is not a port")
    if parts.password is not None and options.password_file is not None:
        raise ConfigurationError(
            f"postgres url {shown!r}: has a password and password_file is set; use one of them"
        )

    options, passed = _URL_OPTIONS.apply_query(options, parts.query, shown, keep_others=True)
    if options.password_file is not None and parts.password is not None:
        # The options had none (checked above): the URL's parameters set it.
        raise ConfigurationError(
            f"postgres url {shown!r}: has a password and password_file; use one of them"
        )
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(passed), ""))
    return DatabaseTarget(conninfo, options)
