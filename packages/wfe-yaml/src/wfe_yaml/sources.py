"""Reading YAML workflow files: regular files only, at most
:data:`~wfe_core.spi.MAX_SOURCE_BYTES`, UTF-8 with the place of the first bad byte."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.spi import UnreadableFileError, read_regular_file
from wfe_yaml.errors import Mark, Problem

if TYPE_CHECKING:
    from pathlib import Path


class SourceError(Exception):
    """A workflow source could not be read; :attr:`problem` says where and why."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def decode_source(data: bytes, file_name: str) -> str:
    """``data`` as UTF-8 text; :class:`SourceError` at the line and column of the first byte
    that is not UTF-8 otherwise (the column counts characters, as YAML marks do)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, line_start) + 1
        # Everything before the bad byte on its line decoded fine.
        column = len(data[line_start : exc.start].decode("utf-8")) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise SourceError(
            Problem(
                Mark(file_name, line, column),
                f"the file is not valid UTF-8 (byte 0x{byte} here)",
            )
        ) from None


def read_source(path: Path, *, include_mark: Mark | None = None, name: str | None = None) -> str:
    """The text of the workflow file ``path``.

    A file that cannot be read (missing, not a regular file, too large) is a problem at
    ``include_mark`` (the ``include:`` entry ``name`` that names it) or else at the file.
    """
    try:
        data = read_regular_file(path)
    except UnreadableFileError as exc:
        if include_mark is not None:
            raise SourceError(Problem(include_mark, f"cannot include {name!r}: {exc}")) from None
        raise SourceError(Problem(Mark(str(path)), f"cannot read the file: {exc}")) from None
    return decode_source(data, str(path))
