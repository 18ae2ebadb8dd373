"""Options and URL parsing of the SQLite providers.

This module imports nothing heavy (no SQLAlchemy): the plugin imports it to name the options
class, and listing providers must stay fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import attrs

from wfe_core.errors import ConfigurationError
from wfe_core.spi import OptionChecks, UrlOptions

__all__ = ["DEFAULT_URL", "MEMORY", "DatabaseTarget", "SqliteOptions", "parse_url"]

#: The database used when no URL is given: ``wfe.db`` in the working directory.
DEFAULT_URL = "sqlite:///wfe.db"

#: The :attr:`DatabaseTarget.path` of an in-memory database.
MEMORY = ":memory:"

Synchronous = Literal["full", "normal", "extra"]
_SYNCHRONOUS: tuple[str, ...] = ("full", "normal", "extra")


_checks = OptionChecks("sqlite")
# Finite and at most a day: inf or 1e12 would overflow the millisecond PRAGMA value or a
# deadline much later instead of being refused here.
_seconds = _checks.seconds()
_positive_int = _checks.count(1)


@attrs.frozen
class SqliteOptions:
    """Tunables shared by the SQLite persistence, queue and lock.

    Invalid values raise :class:`~wfe_core.errors.ConfigurationError` naming the field.

    Every field can also be given as a query parameter of the URL
    (``sqlite:///wfe.db?synchronous=normal&busy_timeout=5``); the URL wins over these options.
    """

    #: SQLite's ``PRAGMA synchronous`` in WAL mode. ``full`` (the default) syncs the WAL on
    #: every commit, so a transition that was acknowledged survives a power loss or an OS crash.
    #: ``normal`` syncs only at checkpoints: about ten times faster, still safe against a crash
    #: of the process, but the last transactions before a power loss may be lost. ``extra``
    #: also syncs the directory after the WAL is reset. Queue claims, acks and requeues and
    #: lock operations are never synced on their own (losing one only causes a redelivery).
    synchronous: Synchronous = attrs.field(default="full", validator=_checks.one_of(_SYNCHRONOUS))
    #: Seconds a connection waits for another process's write transaction before giving up
    #: with :class:`~wfe_core.errors.ProviderError`.
    busy_timeout: float = attrs.field(default=30.0, validator=_seconds)
    #: Reader connections (and worker threads for reads): the most groups of reads run at
    #: once. WAL lets them read while a write is under way. In-memory databases always use one
    #: connection for everything.
    read_connections: int = attrs.field(default=4, validator=_positive_int)
    #: Most write operations committed together in one transaction ("group commit": writes
    #: that arrive while one transaction is being written share the next one's sync), and
    #: most reads run together in one read transaction.
    max_batch_size: int = attrs.field(default=256, validator=_positive_int)
    #: Items one dequeue claims at once when more are waiting (1: no prefetching). The extra
    #: ones wait in this provider, already claimed, for its next dequeue calls; claiming costs
    #: a write, so a consumer taking items one after another gets several per write. Only
    #: for ``visibility_timeout`` of at least 10 seconds (the host uses 300), since a
    #: prefetched item's timeout runs from its claim.
    prefetch: int = attrs.field(default=8, validator=_positive_int)
    #: First and longest pause (seconds) between two looks at the queue or a lock for changes
    #: made by another process. Changes made in this process wake waiters at once; the pause
    #: doubles from ``poll_interval`` up to ``max_poll_interval`` while nothing happens.
    poll_interval: float = attrs.field(default=0.005, validator=_seconds)
    max_poll_interval: float = attrs.field(default=0.1, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if self.max_poll_interval < self.poll_interval:
            raise _checks.error("max_poll_interval", "must not be smaller than poll_interval")


@attrs.frozen
class DatabaseTarget:
    """Where a URL points: an absolute file path, or :data:`MEMORY`."""

    path: str
    options: SqliteOptions

    @property
    def is_memory(self) -> bool:
        return self.path == MEMORY


_URL_OPTIONS = UrlOptions(
    "sqlite",
    SqliteOptions,
    {
        "synchronous": str,
        "busy_timeout": float,
        "read_connections": int,
        "max_batch_size": int,
        "prefetch": int,
        "poll_interval": float,
        "max_poll_interval": float,
    },
)


def parse_url(url: str | None, options: SqliteOptions | None = None) -> DatabaseTarget:
    """Resolve a ``sqlite:`` URL (and options) to a :class:`DatabaseTarget`.

    Accepted forms: ``sqlite:///relative/path.db`` (relative to the working directory at the
    time of the call), ``sqlite:////absolute/path.db``, ``sqlite:///:memory:`` (or
    ``sqlite://``). Query parameters override fields of ``options``.
    Raises :class:`~wfe_core.errors.ConfigurationError` with the reason for anything else.
    """
    options = _URL_OPTIONS.options(options)
    url = _URL_OPTIONS.text(DEFAULT_URL if url is None else url)
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(
            f"sqlite url {url!r}: the scheme must be 'sqlite' "
            "(sqlite:///relative.db, sqlite:////absolute.db or sqlite:///:memory:)"
        )
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite url {url!r}: a host ({parts.netloc!r}) is not allowed; use three slashes "
            "for a relative path (sqlite:///wfe.db) or four for an absolute one "
            "(sqlite:////var/lib/wfe.db)"
        )
    if parts.fragment:
        raise ConfigurationError(f"sqlite url {url!r}: a fragment ('#...') is not allowed")

    # urlsplit keeps the leading slash of the path: "/relative.db" or "//absolute.db".
    raw_path = unquote(parts.path)
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    if path in ("", MEMORY):
        resolved = MEMORY
    else:
        if "\x00" in path:
            raise ConfigurationError(f"sqlite url {url!r}: the path contains a NUL character")
        file = Path(os.path.expanduser(path))
        if path.endswith("/"):
            raise ConfigurationError(f"sqlite url {url!r}: the path names a directory")
        # Resolved now, so the same file named two ways is one database, and a later change of
        # working directory does not move it.
        resolved = str(file.resolve())

    options, _ = _URL_OPTIONS.apply_query(options, parts.query, url)
    return DatabaseTarget(resolved, options)
