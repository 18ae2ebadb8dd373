"""Reading a file named by a user (a workflow, an include, a settings file) safely.

A path from untrusted input may name ``/dev/zero``, a FIFO that nobody writes to, a directory
or a file of many gigabytes. :func:`read_regular_file` refuses all of those with one clear
message instead of reading until memory runs out or hanging in ``open``.

Internal: other distributions import these names from :mod:`wfe_core.spi`.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

#: The largest source file (YAML workflow, ``include:`` target, TOML settings) read: 10 MiB.
MAX_SOURCE_BYTES = 10 * 1024 * 1024


class UnreadableFileError(OSError):
    """A file could not be read, or is not something that may be read; the message says
    why (``not a regular file (a FIFO)``, ``larger than 10 MiB``, an OS error)."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit} bytes"


def read_regular_file(
    path: str | os.PathLike[str] | Path,
    limit: int = MAX_SOURCE_BYTES,
    *,
    follow_links: bool = True,
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (with
    ``follow_links=False``, a symbolic link is refused rather than followed).

    Raises :class:`UnreadableFileError` (an :class:`OSError`) whose message is the reason
    only (callers name the path): the OS error's text, ``not a regular file (a FIFO)`` or
    ``larger than the 10 MiB limit``.
    """
    # O_NONBLOCK: opening a FIFO without a writer returns at once instead of blocking
    # (for a regular file the flag changes nothing). O_NOCTTY: a terminal device named by
    # the path must not become our controlling terminal.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_links and exc.errno == errno.ELOOP:
            raise UnreadableFileError("a symbolic link, which is not followed") from None
        raise UnreadableFileError(exc.strerror or str(exc)) from None
    try:
        # fstat on the opened descriptor: a check of the path before opening could be
        # raced by swapping the file for a FIFO in between.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UnreadableFileError(f"larger than the {_size(limit)} limit")
        chunks: list[bytes] = []
        total = 0
        # Read past st_size too: a file growing while read must still stop at the limit.
        while True:
            chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnreadableFileError(f"larger than the {_size(limit)} limit")
        return b"".join(chunks)
    except UnreadableFileError:
        raise
    except OSError as exc:
        raise UnreadableFileError(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
